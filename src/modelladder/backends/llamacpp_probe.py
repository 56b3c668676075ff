"""Does the installed llama.cpp run on this CPU? Asked in a child process, so a crash is a message.

A llama.cpp compiled for instructions this CPU does not execute (AMX kernels on a VM whose CPU
advertises AMX but loses tile state; an AVX-512 build copied to an AVX2 machine) kills the
process with SIGILL in the middle of the first multi-token prompt, with no Python traceback
and no hint. So before a model is first loaded in-process, a child process loads it and
evaluates a 1-token and a 64-token prompt. A child that dies by a signal becomes a
:class:`ProbeCrash` naming the signal, the likely cause and the rebuild command. A passing
probe is remembered per build identity (the llama_cpp shared libraries' sizes and mtimes, the
CPU, the Python), so it costs one child process per installed build, not per run.

Run as a module it is the child: ``python -m modelladder.backends.llamacpp_probe MODEL.gguf ...``
prints one JSON object a line (``system_info``, then ``loaded``/``eval`` per model).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelladder.native_build import cpu_flags, cpu_model, rebuild_command

__all__ = [
    "PROBE_ENV",
    "PROBE_LENGTHS",
    "PROBE_TIMEOUT_S",
    "ProbeCrash",
    "ProbeResult",
    "build_identity",
    "ensure_runs",
    "remember",
    "run_probe",
]

#: Prompt lengths evaluated per model: one token works even on a broken AMX build; 64 do not.
PROBE_LENGTHS = (1, 64)
PROBE_TIMEOUT_S = 180.0
#: Set to 0 to skip the automatic probe (the doctor command still runs it).
PROBE_ENV = "MODELLADDER_PROBE"

_CAUSES = {
    "SIGILL": "llama.cpp was compiled for CPU instructions this machine does not execute "
    "(for example AMX kernels on a VM whose Intel CPU advertises AMX, or an AVX-512 build "
    "on a CPU without AVX-512)",
    "SIGSEGV": "a memory fault inside llama.cpp: a corrupt or truncated GGUF file, or a llama.cpp "
    "build that does not match the installed llama-cpp-python",
    "SIGBUS": "the GGUF file changed or was truncated while memory-mapped, or the disk is full",
    "SIGABRT": "llama.cpp hit an internal assertion: usually a GGUF file this llama.cpp cannot read",
    "SIGKILL": "the process was killed from outside, most often by the out-of-memory killer",
    "SIGFPE": "an arithmetic fault inside llama.cpp (a build/CPU mismatch)",
}


@dataclass
class ProbeResult:
    """What the child reported: llama.cpp's system info and per model the prompt evaluations."""

    ok: bool
    system_info: str = ""
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    signal: str | None = None
    stage: str = ""
    stderr: str = ""
    returncode: int = 0


class ProbeCrash(RuntimeError):
    """The child died by a signal (or failed) running llama.cpp; the message says what to do."""

    def __init__(self, result: ProbeResult, python: str = "python") -> None:
        self.result = result
        if result.signal:
            cause = _CAUSES.get(result.signal, "a crash inside llama.cpp")
            what = f"llama.cpp died with {result.signal} while {result.stage or 'starting'}"
        else:
            cause = "the probe process failed: " + (result.stderr.strip().splitlines() or ["no output"])[-1]
            what = f"llama.cpp could not run (exit {result.returncode}) while {result.stage or 'starting'}"
        fix = rebuild_command(python)
        super().__init__(
            f"{what}. Likely cause: {cause}. Rebuild llama-cpp-python for this CPU without AMX with "
            f"`modelladder doctor --rebuild`, or by hand: {fix}"
        )


def build_identity() -> str:
    """A key for 'this llama.cpp build on this CPU with this Python' (no llama.cpp code is run)."""
    import importlib.metadata
    import importlib.util

    parts = [sys.version, cpu_model(), ",".join(sorted(cpu_flags()))]
    try:
        parts.append(importlib.metadata.version("llama-cpp-python"))
    except importlib.metadata.PackageNotFoundError:
        parts.append("llama-cpp-python missing")
    spec = importlib.util.find_spec("llama_cpp")
    if spec and spec.submodule_search_locations:
        lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
        for so in sorted(lib.glob("*.so*")) if lib.is_dir() else []:
            st = so.stat()
            parts.append(f"{so.name}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelladder" / "probe.json"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remember(key: str, result: ProbeResult) -> None:
    """Record a passing probe atomically (a torn cache file would only cost a re-probe)."""
    data = _read_cache()
    data[key] = {
        "ok": True,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": sorted(result.models),
    }
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".probe-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache means probing again next time, nothing worse


def run_probe(
    models: list[Path], *, command: list[str] | None = None, timeout_s: float = PROBE_TIMEOUT_S
) -> ProbeResult:
    """Run the child on ``models`` and parse its report. ``command`` replaces the child (tests)."""
    cmd = command or [sys.executable, "-m", "modelladder.backends.llamacpp_probe", *map(str, models)]
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        result = _parse(out)
        result.ok, result.stage = False, f"{result.stage or 'starting'} (no answer in {timeout_s:.0f} s)"
        return result
    result = _parse(proc.stdout)
    result.stderr, result.returncode = proc.stderr[-4000:], proc.returncode
    if proc.returncode < 0:
        result.ok = False
        try:
            result.signal = signal.Signals(-proc.returncode).name
        except ValueError:
            result.signal = f"signal {-proc.returncode}"
    else:
        result.ok = proc.returncode == 0
    return result


def _parse(stdout: str) -> ProbeResult:
    result = ProbeResult(ok=False)
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("event")
        if kind == "system_info":
            result.system_info = event.get("info", "")
        elif kind == "start":
            result.stage = event["stage"]
        elif kind in ("loaded", "eval"):
            entry = result.models.setdefault(event["model"], {})
            if kind == "loaded":
                entry["load_s"] = event["s"]
            else:
                entry[f"eval_{event['n']}"] = {"s": event["s"], "tok_s": event["n"] / max(event["s"], 1e-9)}
    return result


def ensure_runs(models: list[Path], *, python: str = "python") -> ProbeResult | None:
    """Probe once per build (cached); raise :class:`ProbeCrash` if llama.cpp dies on this CPU.

    Returns None when the cache already vouches for this build or probing is switched off.
    """
    if os.environ.get(PROBE_ENV, "1") == "0" or not models:
        return None
    key = build_identity()
    if _read_cache().get(key, {}).get("ok"):
        return None
    result = run_probe(models)
    if not result.ok:
        raise ProbeCrash(result, python)
    remember(key, result)
    return result


def _child(paths: list[str]) -> int:
    """The probe itself: load each model and evaluate short prompts, reporting as it goes."""
    import contextlib
    import io

    def say(**event: Any) -> None:
        print(json.dumps(event), flush=True)

    say(event="start", stage="importing llama_cpp")
    import llama_cpp

    say(event="system_info", info=llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip())
    for path in paths:
        name = Path(path).name
        say(event="start", stage=f"loading {name}")
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            llm = llama_cpp.Llama(path, n_ctx=256, n_threads=2, n_threads_batch=2, n_batch=64, verbose=False)
        say(event="loaded", model=name, s=round(time.perf_counter() - t0, 4))
        text = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)
        tokens = llm.tokenize(text.encode())
        for n in PROBE_LENGTHS:
            say(event="start", stage=f"evaluating a {n}-token prompt of {name}")
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(tokens[:n])
            say(event="eval", model=name, n=n, s=round(time.perf_counter() - t0, 5))
        del llm
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
