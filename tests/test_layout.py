"""The tests are laid out like the package, and test modules share helpers only through
``tests/support`` (a test module imported by another would run its tests twice and couple them)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_test_module_imports_another() -> None:
    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
            )
            if any(
                n.startswith("tests.") and n.split(".")[-1].startswith(("test_", "conftest")) for n in names
            ):
                offenders.append(f"{path.relative_to(TESTS)} imports {names}")
    assert not offenders, offenders


def test_support_modules_hold_no_tests() -> None:
    for path in (TESTS / "support").glob("*.py"):
        assert "\ndef test_" not in path.read_text(), path
