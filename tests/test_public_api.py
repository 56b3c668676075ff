"""The public surface is exactly what ``__all__`` says it is (as httpx tests its own), every
public module declares its ``__all__``, and the version comes from the installed metadata."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

import modelladder

EXPORTED = {
    "Attempt", "Backend", "BackendError", "Check", "Choice", "Confidence", "Contract", "ContractError",
    "Fleet", "FleetError", "Generation", "GenerationParams", "Grammar", "JsonSchema", "Ladder", "Policy", "Regex",
    "Resolved", "Rung", "ScriptedBackend", "Sql", "Step", "StepResult", "ToolCalls", "TraceSink", "Unresolved",
    "UnresolvedError", "Verdict", "check", "contract_from", "grounded_arguments", "load_fleet",
}  # fmt: skip

# Modules that are entry points or scripts rather than importable API.
NOT_API = {
    "modelladder.native_build",
    "modelladder.cli",
}  # a build script; the command line (its API is the CLI)


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(modelladder.__all__) == EXPORTED
    assert len(modelladder.__all__) == len(EXPORTED)  # no name listed twice


def test_every_exported_name_exists() -> None:
    for name in modelladder.__all__:
        assert getattr(modelladder, name) is not None, name


def test_no_public_name_beyond_all() -> None:
    public = {n for n in vars(modelladder) if not n.startswith("_")}
    submodules = {m.name for m in pkgutil.iter_modules(modelladder.__path__)}
    assert public - submodules == EXPORTED


def _public_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(modelladder.__path__, "modelladder."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name in NOT_API:
            continue
        names.append(info.name)
    return names


def test_every_public_module_declares_all() -> None:
    missing = []
    for name in _public_modules():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:  # an optional extra (bench, distill) that is not installed
            continue
        if not hasattr(module, "__all__"):
            missing.append(name)
        else:
            undefined = [n for n in module.__all__ if not hasattr(module, n)]
            assert not undefined, f"{name}.__all__ names {undefined}, which it does not define"
    assert not missing, f"public modules without __all__ (mark them private with `_` or add one): {missing}"


def test_version_is_the_distributions() -> None:
    assert modelladder.__version__ == importlib.metadata.version("modelladder")
