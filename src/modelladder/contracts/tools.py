"""``ToolCalls``: the output is a list of function calls against declared tools.

Canonical text (SmolLM2's trained function-calling format, one line)::

    <tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>

A decline is ``<tool_call>[]</tool_call>`` (only when ``allow_no_call``). ``parse`` is a
little wider than the grammar, for remote models: a plain-text reply with no
``<tool_call>`` is a decline (when declining is allowed), and several ``<tool_call>``
blocks, each holding a list of calls or one call object, are concatenated.

*Call or answer* (``answer=``): the output is either calls or an :class:`Answer` -- free
text, or JSON valid under a :class:`~modelladder.contracts.JsonSchema`. This is what
OpenAI's ``tool_choice="auto"`` means, and what lets an agent loop end: after the tool
results, the model answers. The local grammar offers both branches; a text answer may not
start with ``<`` (so the two branches part at the first character), a JSON answer is the
schema's own grammar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema.protocols import Validator
from llguidance import LLMatcher

from modelladder.contracts._common import (
    COMPACT_JSON,
    JSON_GRAMMAR_OPTIONS,
    best_error,
    check_json_schema,
    closed_for_grammar,
    dumps_canonical,
    ensure_grammar,
    format_error,
    loads_strict,
)
from modelladder.contracts.base import Contract, ContractError, Verdict, canonical_json
from modelladder.contracts.json_schema import JsonSchema

__all__ = ["Answer", "ToolCalls", "normalize_tool", "render_calls", "render_tools"]

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.S)
_EMPTY_PARAMS: dict[str, Any] = {"type": "object", "properties": {}}
_EMPTY_CALLS = re.compile(re.escape(OPEN) + r"\s*\[\s*\]\s*" + re.escape(CLOSE))
# A free-text answer: anything that does not start with "<" or whitespace, so that the
# decoder's first character already says "call" or "answer".
_TEXT_ANSWER = r"/[^<\s][\s\S]*/"


ANSWER_STRING_CAP = 160  # characters of a free string in a forced JSON answer (grammar only): < 256 tokens even digit by digit


def _cap_strings(node: Any, cap: int) -> Any:
    """Give every free string schema (no ``maxLength``, vocabulary or format) a ``maxLength``."""
    if isinstance(node, list):
        return [_cap_strings(n, cap) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: (v if k in ("const", "enum", "default", "examples") else _cap_strings(v, cap))
        for k, v in node.items()
    }
    free = not any(k in out for k in ("maxLength", "enum", "const", "pattern", "format"))
    if out.get("type") == "string" and free:
        out["maxLength"] = cap
    return out


@dataclass(frozen=True)
class Answer:
    """A call-or-answer step's output when the model answered instead of calling.

    ``text`` is the answer as written; ``value`` is what the answer contract made of it:
    the stripped text for a free-text answer, the parsed JSON (or Pydantic instance) for a
    :class:`~modelladder.contracts.JsonSchema` answer. ``free`` is True for free text.
    """

    text: str
    value: Any
    free: bool

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        """The JSON form traces store (the trace store serialises anything with ``model_dump``)."""
        dump = getattr(self.value, "model_dump", None)
        value = dump(mode=mode) if callable(dump) and not isinstance(self.value, type) else self.value
        return {"answer": value}


def _shape(tool: Any) -> dict[str, Any]:
    """Unwrap the OpenAI envelope and fix the key order; no schema checks (cheap)."""
    if not isinstance(tool, dict):
        raise ContractError(f"a tool must be a dict in the OpenAI format, got {type(tool).__name__}")
    fn = tool
    if "function" in tool:
        if tool.get("type", "function") != "function" or not isinstance(tool["function"], dict):
            raise ContractError(
                f"tool {tool!r:.80} is not a function tool; use "
                "{'type': 'function', 'function': {'name': ..., 'parameters': ...}}"
            )
        fn = tool["function"]
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ContractError(f"tool {tool!r:.80} has no name; give every tool a non-empty 'name'")
    out: dict[str, Any] = {"name": name}
    if fn.get("description") is not None:
        if not isinstance(fn["description"], str):
            raise ContractError(f"tool {name!r}: 'description' must be a string")
        out["description"] = fn["description"]
    out["parameters"] = fn.get("parameters") if fn.get("parameters") is not None else _EMPTY_PARAMS
    return out


def normalize_tool(tool: Any) -> dict[str, Any]:
    """``{"type": "function", "function": {...}}`` or bare ``{"name", ...}`` ->
    ``{"name", "description"?, "parameters"}`` (a deep copy; parameters default to an empty
    object schema and must be a valid JSON Schema describing an object)."""
    out = _shape(tool)
    name = out["name"]
    try:
        params = json.loads(json.dumps(out["parameters"]))
    except (TypeError, ValueError) as exc:
        raise ContractError(f"tool {name!r}: parameters are not JSON-serialisable ({exc})") from None
    check_json_schema(params, f"tool {name!r} parameters")
    if params.get("type", "object") != "object":
        raise ContractError(
            f'tool {name!r}: parameters must describe an object ("type": "object"), '
            f"got type {params.get('type')!r}; wrap the value in an object property"
        )
    out["parameters"] = params
    return out


def render_tools(tools: Sequence[dict[str, Any]]) -> str:
    """The tools list as it appears in the prompt: one compact line, keys in declaration order.

    Deterministic for the same declared tools, so the system prompt is byte-identical across
    calls and prompt-prefix caching works. Property order is kept (not sorted) because the
    grammar emits properties in declaration order and the prompt should show the same order.
    """
    return dumps_canonical([_for_prompt(_shape(t)) for t in tools])


def _for_prompt(node: Any) -> Any:
    """Drop ``additionalProperties`` from the prompt copy: the grammar enforces it, and on a
    135M model every prompt token costs ~3 ms of prompt processing."""
    if isinstance(node, list):
        return [_for_prompt(n) for n in node]
    if isinstance(node, dict):
        return {k: _for_prompt(v) for k, v in node.items() if k != "additionalProperties"}
    return node


def render_calls(calls: Sequence[dict[str, Any]]) -> str:
    """Calls ``[{"name", "arguments"}]`` -> the canonical ``<tool_call>[...]</tool_call>`` text."""
    return OPEN + dumps_canonical([{"name": c["name"], "arguments": c["arguments"]} for c in calls]) + CLOSE


def _hoist_refs(node: Any, prefix: str) -> Any:
    """Rewrite local ``$ref``s of a schema that will live at ``#/$defs/<prefix>``."""
    if isinstance(node, list):
        return [_hoist_refs(n, prefix) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "$ref" and isinstance(v, str) and (v == "#" or v.startswith("#/")):
            out[k] = f"#/$defs/{prefix}" + v[1:]
        elif k in ("const", "enum", "default", "examples"):
            out[k] = v  # data, not schema
        else:
            out[k] = _hoist_refs(v, prefix)
    return out


def _uses_refs(node: Any) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_uses_refs(v) for k, v in node.items() if k not in ("const", "enum"))
    if isinstance(node, list):
        return any(_uses_refs(v) for v in node)
    return False


@dataclass(frozen=True)
class ToolCalls(Contract):
    """Output must be function calls to the declared ``tools`` (OpenAI format or bare).

    ``parallel``: more than one call allowed. ``allow_no_call``: declining (no call) allowed.
    ``tool_choice``: ``"auto"``; ``"required"`` (makes ``allow_no_call`` False); a tool name or
    ``{"type": "function", "function": {"name": X}}`` (only X may be called, and it must be
    called, as in OpenAI); ``"none"`` only together with ``answer`` (the answer branch alone:
    what the loop guard falls back to). Without ``answer``, a step that must not call tools is
    a free-text step (``contract=None``).

    ``answer``: ``True`` (call or answer in free text) or a :class:`JsonSchema` (call, or
    answer with JSON valid under it: OpenAI's ``tools`` together with ``response_format``).
    Two kinds of "no call", for two uses: ``allow_no_call`` is a *decline* (the value is
    ``[]``, a pipeline step's machine-readable "no tool serves this", as BFCL's irrelevance
    items want); ``answer`` is a *reply* (the value is an :class:`Answer`, a chat turn's final
    word). A step has one or the other.

    Verdict value: ``[{"name": str, "arguments": dict}, ...]``; ``[]`` is a decline; an
    :class:`Answer` is an answer.
    """

    tools: Sequence[dict[str, Any]]
    parallel: bool = False
    allow_no_call: bool = False
    tool_choice: str | dict[str, Any] = "auto"
    answer: bool | JsonSchema = False
    # Decoding only: free strings of the arguments at most this long, and no free whitespace
    # between JSON tokens (the loop guard's forced call; measured: Gemma, forced onto
    # pydantic-ai's final_result, padded its call with blank lines until max_tokens);
    # validation applies the tools' schemas as declared. Not part of the digest.
    string_cap: int | None = None
    # Prompt layout only: the system prompt of the call-or-answer step a decoding pass belongs
    # to (its decline pass, its answer pass), so every pass and hop of a conversation shares
    # one prompt prefix; what differs goes after the conversation. Not part of the digest.
    system_prompt: str | None = field(default=None, compare=False, repr=False)
    kind: str = field(default="tool_calls", init=False)

    _allowed: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _validators: dict[str, Validator] = field(init=False, repr=False, compare=False)
    _grammar: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.tools, dict | str) or not isinstance(self.tools, Sequence) or not self.tools:
            raise ContractError(
                "ToolCalls needs a non-empty list of tools, e.g. "
                "[{'type': 'function', 'function': {'name': 'f', 'parameters': {...}}}]"
            )
        tools = tuple(normalize_tool(t) for t in self.tools)
        names = [t["name"] for t in tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ContractError(f"tool names must be unique; {dupes} declared more than once")
        set_(self, "tools", tools)

        choice = self.tool_choice
        if isinstance(choice, dict):
            fn = choice.get("function") if choice.get("type") == "function" else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ContractError(
                    f"tool_choice {choice!r} is malformed; use "
                    "{'type': 'function', 'function': {'name': 'tool_name'}} or a name string"
                )
            choice = fn["name"]
        if not isinstance(choice, str):
            raise ContractError(f"tool_choice must be a string or dict, got {type(choice).__name__}")
        answer = self.answer
        if not (answer is False or answer is True or isinstance(answer, JsonSchema)):
            raise ContractError(
                f"answer must be True (a free-text answer) or a JsonSchema contract, got {type(answer).__name__}"
            )
        if choice == "none" and answer is False:
            raise ContractError(
                "tool_choice='none' means the step must not call tools; declare it as a "
                "free-text step (contract=None), or give answer=True / answer=JsonSchema(...)"
            )
        if answer is not False and choice not in ("auto", "none"):
            raise ContractError(
                f"tool_choice={choice!r} forces a call, so the step cannot answer instead; "
                "use tool_choice='auto' with answer=, or drop answer"
            )
        if answer is not False and self.allow_no_call:
            raise ContractError(
                "a step that may answer does not also decline with an empty call list; "
                "give either allow_no_call=True (decline) or answer= (reply)"
            )
        if choice in ("auto", "required", "none"):
            allowed = tuple(names)
        elif choice in names:
            allowed = (choice,)
        else:
            raise ContractError(
                f"tool_choice names {choice!r}, which is not among the tools {names}; "
                "use one of those names, 'auto' or 'required'"
            )
        set_(self, "tool_choice", choice)
        if choice != "auto":
            set_(self, "allow_no_call", False)  # "required" and a named tool both force a call
        set_(self, "parallel", bool(self.parallel))
        set_(self, "allow_no_call", bool(self.allow_no_call))
        set_(self, "_allowed", allowed)
        set_(
            self,
            "_validators",
            {t["name"]: check_json_schema(t["parameters"], f"tool {t['name']!r} parameters") for t in tools},
        )
        set_(self, "_grammar", ensure_grammar(self._build_grammar(), "ToolCalls tools"))

    def __hash__(self) -> int:
        return hash(self.digest())

    def _tools_allowed(self) -> list[dict[str, Any]]:
        return [t for t in self.tools if t["name"] in self._allowed]

    @property
    def answers(self) -> bool:
        """Whether the step may answer instead of calling."""
        return self.answer is not False

    @property
    def calls(self) -> bool:
        """Whether the step may call at all (``tool_choice="none"`` may not)."""
        return self.tool_choice != "none"

    def answer_only(self) -> ToolCalls | None:
        """The same step with calls ruled out (``tool_choice="none"``): what the loop guard
        falls back to on the last rung. ``None`` when the step cannot answer."""
        if not self.answers:
            return None
        if not self.calls:
            return self
        return ToolCalls(self.tools, parallel=self.parallel, tool_choice="none", answer=self.answer,
                         checks=self.checks, system_prompt=self.instructions())  # fmt: skip

    def offering(self, names: Sequence[str]) -> ToolCalls:
        """The same step with only the tools named in ``names`` (in declaration order): what
        tool selection shows an edge rung. A tool ``tool_choice`` names stays in. Decoding
        and validation then admit only those tools."""
        keep = set(names)
        if self.tool_choice not in ("auto", "required", "none"):
            keep.add(str(self.tool_choice))
        tools = [t for t in self.tools if t["name"] in keep]
        if len(tools) == len(self.tools):
            return self
        if not tools:
            raise ContractError(f"none of the tools {sorted(keep)} is declared by this step")
        return ToolCalls(tools, parallel=self.parallel, allow_no_call=self.allow_no_call,
                         tool_choice=self.tool_choice, answer=self.answer, string_cap=self.string_cap,
                         checks=self.checks)  # fmt: skip

    def decision_contract(self, messages: Sequence[dict[str, Any]]) -> ToolCalls | None:
        """For a local decoder, the contract that makes the call-or-answer decision in the
        model's trained format, or ``None`` to decode this contract as it is.

        Measured on SmolLM2-135M: offered a free first character, it answered in text even
        for "What's the weather in Paris?"; in its trained format it calls, and says "no call"
        as ``[]``. So before any tool result a local rung first decodes the decline form
        (calls or ``[]``), and only on ``[]`` decodes the answer (:meth:`answer_only`). After
        tool results the model is told to answer, and decodes both branches at once."""
        if not (self.answers and self.calls) or (messages and messages[-1].get("role") == "tool"):
            return None
        return ToolCalls(self.tools, parallel=self.parallel, allow_no_call=True, tool_choice=self.tool_choice,
                         system_prompt=self.instructions())  # fmt: skip

    def decision(self, text: str) -> str | None:
        """What the model chose, from its output text: ``"call"``, ``"answer"`` or
        ``"decline"`` (``None`` for an empty output). Recorded per attempt, valid or not."""
        body = text.strip()
        if not body:
            return None
        if self.answers:  # the first character decides, as in the grammar
            if not body.startswith(OPEN) or not self.calls:
                return "answer"
        elif OPEN not in body:
            return "decline"
        return "decline" if _EMPTY_CALLS.fullmatch(body) else "call"

    def _answer_lark(self) -> str:
        if isinstance(self.answer, JsonSchema):
            schema = self.answer.grammar_schema()
            if not self.calls:
                # The loop guard's forced answer: measured, SmolLM2 forced to answer in JSON
                # wrote "20.0, 30.0, 40.0, ..." into a string until max_tokens. Decoding only:
                # validation applies the schema as declared.
                schema = _cap_strings(schema, ANSWER_STRING_CAP)
            schema.setdefault("x-guidance", dict(JSON_GRAMMAR_OPTIONS))
            return f"answer: %json {json.dumps(schema)}\n"
        return f"answer: TEXT\nTEXT: {_TEXT_ANSWER}\n"

    def _build_grammar(self, tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The grammar over ``tools`` (default: the tools ``tool_choice`` allows), with the
        answer branch beside the calls when the step may answer."""
        if not self.calls:
            return LLMatcher.grammar_from_lark("start: answer\n" + self._answer_lark())
        defs: dict[str, Any] = {}
        options = []
        for i, tool in enumerate(self._tools_allowed() if tools is None else tools):
            params = closed_for_grammar(tool["parameters"])
            if self.string_cap is not None:
                params = _cap_strings(params, self.string_cap)
            if _uses_refs(params):  # local refs resolve against the root: move the schema there
                key = f"tool{i}"
                defs[key] = _hoist_refs(params, key)
                params = {"$ref": f"#/$defs/{key}"}
            params.pop("$schema", None)
            options.append(
                {
                    "type": "object",
                    "properties": {"name": {"const": tool["name"]}, "arguments": params},
                    "required": ["name", "arguments"],
                    "additionalProperties": False,
                }
            )
        schema: dict[str, Any] = {"type": "array", "items": {"anyOf": options}}
        if not self.allow_no_call:  # an answering step answers; it never sends an empty list
            schema["minItems"] = 1
        if not self.parallel:
            schema["maxItems"] = 1
        if defs:
            schema["$defs"] = defs
        schema["x-guidance"] = dict(JSON_GRAMMAR_OPTIONS if self.string_cap is None else COMPACT_JSON)
        lark = f"start: {json.dumps(OPEN)} calls {json.dumps(CLOSE)}\ncalls: %json {json.dumps(schema)}\n"
        if self.answers:
            lark = (
                "start: call_block | answer\n"
                + lark.replace("start:", "call_block:", 1)
                + self._answer_lark()
            )
        return LLMatcher.grammar_from_lark(lark)

    def grammar(self) -> str:
        return self._grammar

    def grounded_grammar(self, text: str) -> str:
        """The grammar with every free string argument narrowed to a span of ``text`` (see
        :mod:`modelladder.contracts.grounding`); the plain grammar when ``text`` has no word."""
        from modelladder.contracts.grounding import ground_tools

        tools = ground_tools(self._tools_allowed(), text)
        if tools is None:
            return self._grammar
        try:
            return ensure_grammar(self._build_grammar(tools), "ToolCalls tools")
        except ContractError:  # a very long text outgrows llguidance's lexer limit: do not narrow
            return self._grammar

    def _parse_answer(self, body: str) -> Verdict:
        if isinstance(self.answer, JsonSchema):
            inner = self.answer.parse(body)
            if not inner.ok:
                return Verdict.failed(inner.reason or "schema_violation", f"the answer: {inner.detail}")
            return Verdict.passed(Answer(body, inner.value, free=False))
        return Verdict.passed(Answer(body, body, free=True))

    def validate(self, text: str, messages: Sequence[dict[str, Any]] = ()) -> Verdict:
        """Calls get this contract's checks; an answer gets its answer contract's checks
        (a check on call arguments has nothing to say about a reply)."""
        if not self.answers or self.decision(text) != "answer":
            return super().validate(text, messages)
        if isinstance(self.answer, JsonSchema):
            inner = self.answer.validate(text, messages)
            if not inner.ok:
                return Verdict.failed(
                    inner.reason or "schema_violation", f"the answer: {inner.detail}", inner.value
                )
            return Verdict.passed(Answer(text.strip(), inner.value, free=False))
        return self.parse(text)

    def parse(self, text: str) -> Verdict:
        body = text.strip()
        # An answering step's output is an answer unless it *starts* with a call (the grammar
        # parts the branches at the first character), so a text answer, once begun, can never
        # turn into a failed parse -- which is what lets the gateway stream it live.
        if self.answers and (not self.calls or not body.startswith(OPEN)):
            return self._parse_answer(body)
        if OPEN not in body:
            if self.answers:
                return self._parse_answer(body)
            if self.allow_no_call:
                return Verdict.passed([])  # a plain-text refusal is a decline
            return Verdict.failed(
                "no_call_not_allowed", f"no {OPEN} block in the output; this step must call a tool"
            )
        raw_calls: list[Any] = []
        pos = 0
        for m in _BLOCK.finditer(body):
            if body[pos : m.start()].strip():
                return Verdict.failed(
                    "parse_error", f"text outside {OPEN}...{CLOSE}: {body[pos : m.start()].strip()!r:.80}"
                )
            try:
                payload = loads_strict(m.group(1).strip())
            except (ValueError, RecursionError) as exc:
                return Verdict.failed("parse_error", f"the {OPEN} block is not valid JSON: {exc}")
            if isinstance(payload, dict):
                raw_calls.append(payload)
            elif isinstance(payload, list):
                raw_calls.extend(payload)
            else:
                return Verdict.failed("parse_error", f"the {OPEN} block must hold a JSON list of calls")
            pos = m.end()
        rest = body[pos:].strip()
        if rest:
            what = f"missing {CLOSE}" if OPEN in rest else f"text outside {OPEN}...{CLOSE}"
            return Verdict.failed("parse_error", f"{what}: {rest!r:.80}")

        calls: list[dict[str, Any]] = []
        for i, c in enumerate(raw_calls):
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                return Verdict.failed("parse_error", f"call #{i} must be an object with a string 'name'")
            extra = sorted(set(c) - {"name", "arguments"})
            if extra:
                return Verdict.failed(
                    "schema_violation",
                    f"call #{i} ({c['name']}): unexpected key(s) {extra}; "
                    "a call has only 'name' and 'arguments'",
                )
            if not isinstance(c.get("arguments"), dict):
                return Verdict.failed(
                    "schema_violation", f"call #{i} ({c['name']}): 'arguments' must be a JSON object"
                )
            calls.append({"name": c["name"], "arguments": c["arguments"]})

        if not calls and not self.allow_no_call:
            return Verdict.failed(
                "no_call_not_allowed", "the output declines (no call); this step must call a tool", calls
            )
        if len(calls) > 1 and not self.parallel:
            return Verdict.failed(
                "too_many_calls", f"{len(calls)} calls, but this step allows exactly one", calls
            )
        for c in calls:
            if c["name"] not in self._allowed:
                return Verdict.failed(
                    "unknown_tool",
                    f"{c['name']!r} is not a callable tool here; allowed: {list(self._allowed)}",
                    calls,
                )
            try:
                err = best_error(self._validators[c["name"]], c["arguments"])
            except RecursionError:
                return Verdict.failed("schema_violation", f"{c['name']}: arguments nested too deeply", calls)
            if err is not None:
                return Verdict.failed(
                    "schema_violation", f"{c['name']}: " + format_error(err, "arguments"), calls
                )
        return Verdict.passed(calls)

    def equivalent(self, a: Any, b: Any) -> bool:
        """The same tool calls after argument normalisation: arguments compared as canonical
        JSON with ``null`` arguments dropped (an omitted optional argument and an explicit
        ``null`` mean the same call) and strings stripped; parallel calls compared as a multiset."""

        def norm(calls: Any) -> list[str]:
            out = []
            for c in calls or []:
                args = {k: (v.strip() if isinstance(v, str) else v)
                        for k, v in (c.get("arguments") or {}).items() if v is not None}  # fmt: skip
                out.append(canonical_json({"name": c.get("name"), "arguments": args}))
            return sorted(out) if self.parallel else out

        return norm(a) == norm(b)

    def _answer_instructions(self) -> str:
        if isinstance(self.answer, JsonSchema):
            return "For your final answer: " + self.answer.instructions()
        return "Write your final answer as plain text, without any <tool_call> tags."

    def instructions(self) -> str:
        if not self.calls:
            return (
                "The tool results you need are in the conversation. Do not call any function now: "
                + self._answer_instructions()
            )
        how_many = "one or more function/tool calls" if self.parallel else "exactly one function/tool call"
        if self.answers:
            # Call or answer, before any tool result: SmolLM2's trained function-calling
            # prompt, whose pull towards a call is what a first turn needs, with a reply as the
            # way out when no function fits.
            refuse = (
                "If none of the functions can be used, answer the user directly. "
                + self._answer_instructions()
            )
            empty = ""
        elif self.allow_no_call:
            refuse = (
                "If none of the functions can be used, point it out and refuse to answer. "
                "If the given question lacks the parameters required by the function, also point it out."
            )
            empty = " If no function call is needed, please make the tool calls an empty list '[]'."
        else:
            refuse, empty = "You must always call a function.", ""
        more = ",\n... (more tool calls as required)" if self.parallel else ""
        # The fixed text comes first and the tool list last, so calls of different tools
        # still share a long prompt prefix in the model's KV cache.
        return (
            "You are an expert in composing functions. You are given a question and a set of possible functions. "
            f"Based on the question, you will need to make {how_many} to achieve the purpose. {refuse}\n\n"
            "The output MUST strictly adhere to the following format, and NO other text MUST be included.\n"
            f"The example format is as follows. Please make sure the parameter type is correct.{empty}\n"
            "<tool_call>[\n"
            '{"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}}'
            f"{more}\n]</tool_call>\n\n"
            f"You have access to the following tools:\n<tools>{render_tools(self._tools_allowed())}</tools>"
        )

    def instructions_for(self, messages: Sequence[dict[str, Any]]) -> str:
        return self.system_prompt if self.system_prompt is not None else self.instructions()

    def turn_instructions(self, messages: Sequence[dict[str, Any]]) -> str:
        """After tool results (the conversation ends with ``role: tool`` messages) a
        call-or-answer step is told to answer from them: the trained prompt pulls a small
        model into calling again, which is how agent loops never end. The grammar still
        offers both branches; the loop guard catches a repeated call all the same. This comes
        after the results, not in the system prompt, so the system prompt (and the prompt
        cache's prefix) stays the same on every hop."""
        if self.system_prompt is not None and not self.calls:  # the answer pass of a call-or-answer step
            return "Do not call any function now: " + self._answer_instructions()
        if not (self.answers and self.calls and messages and messages[-1].get("role") == "tool"):
            return ""
        return (
            "The results of the function calls you made are above. "
            "Answer the user's question from them now. " + self._answer_instructions() + "\n"
            "Only if a different function call is still needed, write it instead as "
            '<tool_call>[{"name": "func_name", "arguments": {...}}]</tool_call>'
        )

    def openai_request(self) -> dict[str, Any]:
        # A step that must call gets "required" even under "auto": the remote model is told,
        # not just checked afterwards.
        if self.tool_choice not in ("auto", "required", "none"):
            choice: Any = {"type": "function", "function": {"name": self.tool_choice}}
        elif self.tool_choice == "none":
            choice = "none"
        else:
            choice = "auto" if self.allow_no_call or self.answers else "required"
        out: dict[str, Any] = {
            "tools": [{"type": "function", "function": json.loads(json.dumps(t))} for t in self.tools],
            "tool_choice": choice,
            "parallel_tool_calls": self.parallel,
        }
        if isinstance(self.answer, JsonSchema):  # OpenAI serves the pair: calls, then schema-shaped content
            out.update(self.answer.openai_request())
        return out

    def from_openai_message(self, message: dict[str, Any]) -> str:
        """``message["tool_calls"]`` -> canonical text; content only -> a decline, unless the
        content already holds a ``<tool_call>`` block (servers that pass raw text through).
        Malformed ``arguments`` strings are kept verbatim so ``parse`` reports them, and a
        ``tool_calls`` that is not a list of ``{"function": {...}}`` objects becomes calls without a
        name (found by tests/contracts/test_contracts_fuzz.py: it used to raise)."""
        tool_calls = message.get("tool_calls") or []
        if not isinstance(tool_calls, list):  # a malformed endpoint: parse will say what is wrong
            tool_calls = [tool_calls]
        if not tool_calls:
            content = message.get("content") or ""
            if self.answers and isinstance(content, str) and content.strip():
                return content  # the reply is the answer
            return content if isinstance(content, str) and OPEN in content else OPEN + "[]" + CLOSE
        parts = []
        for tc in tool_calls:
            fn = tc.get("function") if isinstance(tc, dict) else None
            fn = fn if isinstance(fn, dict) else {}  # no function object: a call with no name
            args = fn.get("arguments")
            if isinstance(args, str):
                try:
                    args_text = dumps_canonical(loads_strict(args)) if args.strip() else "{}"
                except (ValueError, RecursionError):
                    args_text = args  # kept verbatim: parse reports it as parse_error
            else:
                args_text = dumps_canonical({} if args is None else args)
            parts.append(f'{{"name": {dumps_canonical(fn.get("name"))}, "arguments": {args_text}}}')
        return OPEN + "[" + ", ".join(parts) + "]" + CLOSE

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tools": list(self.tools),
            "parallel": self.parallel,
            "allow_no_call": self.allow_no_call,
            "tool_choice": self.tool_choice,
        }
        if isinstance(self.answer, JsonSchema):  # only when set: older contracts keep their digest
            out["answer"] = {"kind": "json_schema", "spec": self.answer.spec()}
        elif self.answer:
            out["answer"] = {"kind": "text"}
        return out
