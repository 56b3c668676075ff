"""Portability: the llama.cpp build options, the child-process probe, and ``modelladder doctor``.

The probe tests use a child that kills itself with SIGILL as the stand-in for llama.cpp dying
on an AMX VM (the real crash is in docs/portability.md); the doctor test runs the real probe on
the bundled models.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelladder.backends import llamacpp_probe
from modelladder.backends.llamacpp_probe import ProbeCrash, ensure_runs, run_probe
from modelladder.cli import main
from modelladder.native_build import LLAMA_CPP_PYTHON_VERSION, build_key, cmake_args, cpu_flags

SPR_FLAGS = frozenset(
    [
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi2",
        "avx_vnni",
        "avx512f",
        "avx512cd",
        "avx512vl",
        "avx512dq",
        "avx512bw",
        "avx512vbmi",
        "avx512_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    ]
)
SIGILL_CHILD = [
    sys.executable,
    "-c",
    'import os, signal; print(\'{"event": "start", "stage": '
    '"evaluating a 64-token prompt of x.gguf"}\', flush=True); os.kill(os.getpid(), signal.SIGILL)',
]


def test_pinned_version_matches_pyproject() -> None:
    deps = tomllib.loads(Path(__file__).parents[2].joinpath("pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    assert f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}" in deps


def test_amx_cpu_gets_avx512_but_never_amx() -> None:
    args = cmake_args(SPR_FLAGS, "x86_64").split()
    assert "-DGGML_NATIVE=OFF" in args
    assert {"-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON", "-DGGML_AVX2=ON"} <= set(
        args
    )
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)
    assert not any(a.startswith("-DGGML_AMX") and a.endswith("=ON") for a in args)


def test_avx2_only_cpu_gets_no_avx512() -> None:
    args = cmake_args(frozenset(["sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"]), "x86_64").split()
    assert "-DGGML_AVX2=ON" in args and "-DGGML_AVX512=OFF" in args and "-DGGML_AVX512_VNNI=OFF" in args
    # an AVX-512 extension without the AVX-512 base is not enabled on its own
    partial = cmake_args(frozenset(["avx2", "avx512_vnni"]), "x86_64").split()
    assert "-DGGML_AVX512_VNNI=OFF" in partial


def test_other_architectures_keep_native() -> None:
    assert cmake_args(frozenset(), "aarch64") == "-DGGML_NATIVE=ON"


def test_cache_key_follows_the_options() -> None:
    a = build_key(cmake_args(SPR_FLAGS, "x86_64"))
    b = build_key(cmake_args(frozenset(["avx2", "fma"]), "x86_64"))
    assert a != b and a.startswith(f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}-")
    assert a == build_key(cmake_args(SPR_FLAGS, "x86_64"))


def test_cpu_flags_parse() -> None:
    assert cpu_flags("processor\t: 0\nflags\t\t: fpu avx2 amx_tile\n") == {"fpu", "avx2", "amx_tile"}


def test_probe_turns_sigill_into_a_message() -> None:
    result = run_probe([], command=SIGILL_CHILD)
    assert not result.ok and result.signal == "SIGILL"
    message = str(ProbeCrash(result, "python"))
    assert "SIGILL" in message and "64-token prompt" in message
    assert "AMX" in message and "modelladder doctor --rebuild" in message
    assert "-DGGML_NATIVE=OFF" in message and "--no-cache-dir" in message


def test_probe_failure_without_signal_is_reported() -> None:
    result = run_probe([], command=[sys.executable, "-c", "raise SystemExit('no llama here')"])
    assert not result.ok and result.signal is None and result.returncode == 1
    assert "no llama here" in str(ProbeCrash(result))


def test_ensure_runs_raises_and_caches_only_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls: list[int] = []

    def crashing(models: list[Path], **_: object) -> llamacpp_probe.ProbeResult:
        calls.append(1)
        return run_probe(models, command=SIGILL_CHILD)

    monkeypatch.setattr(llamacpp_probe, "run_probe", crashing)
    for _ in range(2):  # a crash is not remembered: it is probed (and reported) again
        with pytest.raises(ProbeCrash):
            ensure_runs([tmp_path / "m.gguf"])
    assert len(calls) == 2
    assert not (tmp_path / "modelladder" / "probe.json").exists()


def test_cli_exits_2_with_the_message_when_the_probe_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real = llamacpp_probe.run_probe
    monkeypatch.setattr(llamacpp_probe, "run_probe", lambda models, **kw: real(models, command=SIGILL_CHILD))
    for args in (["doctor"], ["demo"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, res.output
        assert "SIGILL" in res.output and "modelladder doctor --rebuild" in res.output


@pytest.mark.model
def test_doctor_runs_the_real_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    res = CliRunner().invoke(main, ["doctor"])
    assert res.exit_code == 0, res.output
    for line in ("llama-cpp-python", "model smollm2-135m", "model gemma3-270m", "trace store", "fleet"):
        assert line in res.output
    assert "probe smollm2-135m" in res.output and "64-token" in res.output
    assert "all checks passed" in res.output
    assert (tmp_path / "modelladder" / "probe.json").is_file()  # demo/serve/bench skip the probe now
