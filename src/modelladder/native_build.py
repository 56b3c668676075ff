"""A llama.cpp build that runs on the CPU it is built on: CPU features chosen explicitly, AMX never.

pip builds llama-cpp-python from its sdist with ``GGML_NATIVE=ON``, which compiles llama.cpp's
AMX kernels in whenever the build machine reports AMX. On KVM guests of Intel Sapphire/Emerald
Rapids (AWS m7i/c7i, GCP C3) the CPU advertises AMX but tile state does not survive, and the
first multi-token prompt dies with SIGILL at ``tilezero`` in ``ggml_backend_amx_mul_mat``
(measured 2026-12-01, see docs/portability.md). This module turns the CPU's feature flags into
explicit ``GGML_*`` CMake options with ``GGML_NATIVE=OFF`` and every ``GGML_AMX_*`` off, builds
that wheel once into a cache keyed by the options (pip's own wheel cache is keyed by the sdist's
name only, so a native wheel would be reused whatever ``CMAKE_ARGS`` said), and installs it.

Why not runtime dispatch (``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``): llama-cpp-python
0.3.36 has no binding that loads dynamic backends (``ggml_backend_load_all``), and compiling
every CPU variant multiplies the ~8-minute build on 2 cores.

It imports only the standard library: the Makefile runs it as a script
(``python src/modelladder/native_build.py install --python .venv/bin/python``) before the
package is installed, and ``modelladder doctor --rebuild`` runs the same code afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: The llama-cpp-python release the package pins (a test checks pyproject.toml agrees).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"

#: /proc/cpuinfo flag -> GGML CMake option (x86-64). Order is the order the args are written.
X86_OPTIONS: tuple[tuple[str, str], ...] = (
    ("sse4_2", "GGML_SSE42"),
    ("avx", "GGML_AVX"),
    ("avx2", "GGML_AVX2"),
    ("fma", "GGML_FMA"),
    ("f16c", "GGML_F16C"),
    ("bmi2", "GGML_BMI2"),
    ("avx_vnni", "GGML_AVX_VNNI"),
    ("avx512f", "GGML_AVX512"),
    ("avx512vbmi", "GGML_AVX512_VBMI"),
    ("avx512_vnni", "GGML_AVX512_VNNI"),
    ("avx512_bf16", "GGML_AVX512_BF16"),
)
#: Never compiled in: the kernels that die on VMs whose CPUs advertise them.
AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
#: What GGML_AVX512 needs beyond avx512f (ggml adds -mavx512cd/vl/dq/bw with it).
AVX512_BASE = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name, for messages and the probe cache key."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return platform.processor() or platform.machine()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine()


def cmake_args(flags: frozenset[str] | None = None, machine: str | None = None) -> str:
    """The CMAKE_ARGS for a build that uses this CPU's features, except AMX.

    On x86-64 every GGML instruction-set option is set explicitly (ON where the CPU has the
    feature, OFF elsewhere) so the build does not depend on the compiler's idea of "native".
    Elsewhere (aarch64) the native build is kept: the AMX fault is x86-only.
    """
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return "-DGGML_NATIVE=ON"
    flags = cpu_flags() if flags is None else flags
    args = ["-DGGML_NATIVE=OFF"]
    for flag, option in X86_OPTIONS:
        have = flag in flags
        if option == "GGML_AVX512":
            have = all(f in flags for f in AVX512_BASE)
        elif option.startswith("GGML_AVX512_"):
            have = have and all(f in flags for f in AVX512_BASE)
        args.append(f"-D{option}={'ON' if have else 'OFF'}")
    args += [f"-D{option}=OFF" for option in AMX_OPTIONS]
    return " ".join(args)


def build_key(args: str, version: str = LLAMA_CPP_PYTHON_VERSION) -> str:
    """A cache key naming what was built: the release, the platform and the CMake options."""
    tag = f"{version}|{sys.implementation.cache_tag}|{platform.machine()}|{args}"
    return f"llama-cpp-python-{version}-{hashlib.sha256(tag.encode()).hexdigest()[:12]}"


def wheel_cache_root() -> Path:
    """Where built wheels are kept: $MODELLADDER_WHEEL_CACHE, else ~/.cache/modelladder/wheels."""
    env = os.environ.get("MODELLADDER_WHEEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelladder" / "wheels"


def cached_wheel(args: str) -> Path | None:
    """The wheel already built with these options, if any."""
    folder = wheel_cache_root() / build_key(args)
    wheels = sorted(folder.glob("llama_cpp_python-*.whl")) if folder.is_dir() else []
    return wheels[0] if wheels else None


def build_wheel(python: str, args: str, *, quiet: bool = False) -> Path:
    """Build llama-cpp-python from source with ``args`` into the cache (atomically) and return it."""
    root = wheel_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / build_key(args)
    tmp = tempfile.mkdtemp(dir=root, prefix=".building-")
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may serve several users' venvs
    try:
        cmd = [
            python,
            "-m",
            "pip",
            "wheel",
            f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            "--no-deps",
            "--no-binary",
            "llama-cpp-python",
            "--no-cache-dir",
            "-w",
            tmp,
        ]
        if quiet:
            cmd.append("--quiet")
        subprocess.run(cmd, check=True, env=dict(os.environ, CMAKE_ARGS=args))
        (Path(tmp) / "CMAKE_ARGS").write_text(args + "\n")
        if not final.exists():  # a concurrent build that finished first wins
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wheel = cached_wheel(args)
    if wheel is None:
        raise RuntimeError(f"pip built no llama-cpp-python wheel into {final}")
    return wheel


def install(python: str, *, quiet: bool = False, force: bool = False) -> Path:
    """Install the portable llama-cpp-python into ``python``'s environment, building it if needed."""
    args = cmake_args()
    wheel = None if force else cached_wheel(args)
    if wheel is None:
        print(
            f"building llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} with CMAKE_ARGS={args!r} "
            "(about 8 minutes on 2 cores, once per CPU feature set)",
            file=sys.stderr,
            flush=True,
        )
        wheel = build_wheel(python, args, quiet=quiet)
    cmd = [python, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)]
    if quiet:
        cmd.append("--quiet")
    subprocess.run(cmd, check=True)
    return wheel


def rebuild_command(python: str = "python") -> str:
    """The one line a user runs to replace a crashing llama-cpp-python with the safe build."""
    return (
        f'CMAKE_ARGS="{cmake_args()}" {python} -m pip install --force-reinstall --no-deps '
        f"--no-cache-dir --no-binary llama-cpp-python llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("cmake-args", help="print the CMAKE_ARGS for this CPU")
    inst = sub.add_parser("install", help="build (once) and install the portable wheel")
    inst.add_argument("--python", default=sys.executable)
    inst.add_argument("--quiet", action="store_true")
    inst.add_argument("--force", action="store_true", help="rebuild even if a cached wheel exists")
    ns = parser.parse_args(argv)
    if ns.cmd == "cmake-args":
        print(cmake_args())
        return 0
    print(install(ns.python, quiet=ns.quiet, force=ns.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
