"""A pre-imported gateway launcher: ``python -m tests.support.zygote`` imports the gateway's
modules once, then forks one child per ``start`` line it reads, and that child runs the real
``modelladder serve`` command line (``main(["serve", ...])``) in a fresh process.

Why: a cold start is mostly Python importing FastAPI, OpenAI and the package (1-2 s on two
busy cores), which has nothing to do with what a crash leaves behind; the SIGKILL test needs
20 restarts in CI. The child still loads the fleet, opens (and recovers) the trace store,
builds the app, binds and serves, exactly as a cold start does; the test times cold starts
separately. Protocol (one line each way): ``start <log path> <args...>`` -> ``<pid>``;
``wait <pid>`` -> ``<exit status>``.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import openai.resources.chat  # noqa: F401 -- lazy in the SDK: a cold gateway pays it on its first request
    import uvicorn  # noqa: F401

    import modelladder.backends.openai_compat  # noqa: F401 -- the imports a cold start pays for
    import modelladder.cli.serve_cmd  # noqa: F401
    import modelladder.gateway  # noqa: F401
    import modelladder.learning  # noqa: F401
    from modelladder.cli import main as cli

    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd == "start":
            log, *args = rest
            pid = os.fork()
            if pid == 0:  # the child: the command line, its output to the log
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                code = 0
                try:
                    cli(args, standalone_mode=False)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 -- say it in the log, then die
                    import traceback

                    traceback.print_exc()
                    code = 1
                os._exit(code)
            print(pid, flush=True)
        elif cmd == "wait":
            _, status = os.waitpid(int(rest[0]), 0)
            print(status, flush=True)


if __name__ == "__main__":
    main()
