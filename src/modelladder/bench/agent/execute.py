"""Run BFCL multi-turn call strings on fresh instances of the executable classes, safely.

BFCL's own executor (``multi_turn_utils.execute_multi_turn_func_call``) runs each call string
with ``eval()``. Here a call is *parsed* with :mod:`ast` instead: it must be one plain call
``name(literal, key=literal, ...)`` of a public method of the item's classes, every argument
a Python literal (``ast.literal_eval``); anything else is a failed call with its reason, never
code that runs. Each call gets a wall-clock limit (``SIGALRM``, main thread only: the harness
runs there) and an output-size limit (its return value and anything it prints), so a tool
that loops or prints megabytes is cut off.

Outputs are formatted exactly as BFCL's executor formats them (a ``str`` as is, a ``dict``
as JSON, anything else ``str()``; an exception as ``"Error during execution: ..."``), so
what the model reads and what the official checker compares are the same strings.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import inspect
import io
import json
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CallParseError",
    "CallResult",
    "DEFAULT_OUTPUT_LIMIT",
    "DEFAULT_TIME_LIMIT_S",
    "FORBIDDEN",
    "ParsedCall",
    "ToolEnv",
    "format_output",
    "parse_call",
    "render_call",
]

# Names BFCL's executor refuses to run, refused the same way here.
FORBIDDEN = ("kill", "exit", "quit", "remove", "unlink", "popen", "Popen", "run")
DEFAULT_TIME_LIMIT_S = 5.0
# The largest gold output (long_context) is 31,706 characters; well above that.
DEFAULT_OUTPUT_LIMIT = 100_000


class CallParseError(ValueError):
    """A call string that is not ``name(literals...)``."""


@dataclass(frozen=True)
class ParsedCall:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def parse_call(text: str) -> ParsedCall:
    """``"mv(source='a', destination='b')"`` -> :class:`ParsedCall`; never evaluates code."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise CallParseError(f"not a call: {exc.msg}") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise CallParseError("not a plain call of a function name")
    args = []
    for a in node.args:
        if isinstance(a, ast.Starred):
            raise CallParseError("*args are not allowed")
        args.append(_literal(a))
    kwargs = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise CallParseError("**kwargs are not allowed")
        kwargs[kw.arg] = _literal(kw.value)
    return ParsedCall(node.func.id, tuple(args), kwargs)


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise CallParseError(f"argument {ast.unparse(node)[:80]!r} is not a literal") from None


def render_call(name: str, arguments: Mapping[str, Any]) -> str:
    """A model's call (JSON arguments) as a BFCL call string, keyword arguments only."""
    return f"{name}(" + ",".join(f"{k}={v!r}" for k, v in arguments.items()) + ")"


def _plain(v: Any) -> Any:
    """Tuples -> lists, recursively: JSON (what a model emits) has no tuples."""
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def format_output(result: Any) -> str:
    """BFCL's formatting of a return value (``execute_multi_turn_func_call``)."""
    if type(result) is str:
        return result
    if type(result) is dict:
        try:
            return json.dumps(result)
        except (TypeError, ValueError):
            return str(result)
    return str(result)


@dataclass(frozen=True)
class CallResult:
    """What one call gave: the output the model reads, and ``error`` (``None`` when it ran
    and returned) as a short machine-readable reason."""

    call: str
    output: str
    error: str | None = None


class _Timeout(BaseException):
    """Raised inside a tool by the alarm (a BaseException so a tool's ``except Exception``
    cannot swallow it)."""


class _CappedSink(io.TextIOBase):
    """Stdout/stderr of a tool: keeps at most ``cap`` characters and notes the overflow."""

    def __init__(self, cap: int):
        self.cap, self.size = cap, 0

    def write(self, s: str) -> int:
        self.size += len(s)
        return len(s)


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise _Timeout

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class ToolEnv:
    """Fresh instances of an item's classes, loaded from its ``initial_config`` the way BFCL
    loads them (``cls()`` then ``_load_scenario(deepcopy(config), long_context=...)``)."""

    def __init__(
        self,
        instances: dict[str, Any],
        *,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ):
        self.instances = instances
        self.time_limit_s = time_limit_s
        self.output_limit = output_limit
        self._methods: dict[str, Any] = {}
        for inst in instances.values():
            for name, method in inspect.getmembers(inst, predicate=inspect.ismethod):
                if not name.startswith("_"):
                    self._methods[name] = method

    @classmethod
    def fresh(cls, entry: Mapping[str, Any], *, long_context: bool, **limits: Any) -> ToolEnv:
        from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING, STATELESS_CLASSES

        instances = {}
        for name in entry["involved_classes"]:
            inst = getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[name]), name)()
            if name not in STATELESS_CLASSES:
                inst._load_scenario(
                    copy.deepcopy(entry["initial_config"].get(name, {})), long_context=long_context
                )
            instances[name] = inst
        return cls(instances, **limits)

    def copy(self) -> ToolEnv:
        """An independent copy (the state before a call, to try another call on)."""
        return ToolEnv(
            copy.deepcopy(self.instances), time_limit_s=self.time_limit_s, output_limit=self.output_limit
        )

    def state(self) -> dict[str, dict[str, Any]]:
        """Every public attribute of every instance: what BFCL's state checker compares."""
        return {
            c: {k: v for k, v in vars(i).items() if not k.startswith("_")} for c, i in self.instances.items()
        }

    def normalised(self, call: ParsedCall) -> tuple[str, dict[str, Any]] | None:
        """The call bound to its method's signature, defaults filled in, tuples as lists: two
        calls that mean the same (positional or keyword, a default spelt out or left out) are
        equal. ``None`` when the name is unknown or the arguments do not bind."""
        method = self._methods.get(call.name)
        if method is None:
            return None
        try:
            bound = inspect.signature(method).bind(*call.args, **call.kwargs)
        except TypeError:
            return None
        bound.apply_defaults()
        return call.name, _plain(dict(bound.arguments))

    def run(self, text: str) -> CallResult:
        """Parse and execute one call string. Never raises for a bad call."""
        try:
            call = parse_call(text)
        except CallParseError as exc:
            return CallResult(text, f"Error during execution: {exc}", "parse_error")
        if call.name in FORBIDDEN:
            return CallResult(
                text, f"Error during execution: Function call {call.name} is not allowed.", "forbidden"
            )
        method = self._methods.get(call.name)
        if method is None:
            return CallResult(
                text, f"Error during execution: name '{call.name}' is not defined", "unknown_function"
            )
        sink = _CappedSink(self.output_limit)
        try:
            with (
                _time_limit(self.time_limit_s),
                contextlib.redirect_stdout(sink),
                contextlib.redirect_stderr(sink),
            ):
                value = method(*call.args, **call.kwargs)
            output = format_output(value)
        except _Timeout:
            return CallResult(
                text, f"Error during execution: cut off after {self.time_limit_s:g} s", "time_limit"
            )
        except Exception as exc:
            return CallResult(text, f"Error during execution: {exc}", f"tool_error:{type(exc).__name__}")
        if len(output) > self.output_limit or sink.size > self.output_limit:
            size = max(len(output), sink.size)
            cut = output[: self.output_limit]
            return CallResult(
                text, cut + f"... [cut off: {size} characters > {self.output_limit}]", "output_limit"
            )
        return CallResult(text, output)
