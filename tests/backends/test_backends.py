"""The backend registry (one entry-point group for fleet validation and ``open_backend``) and
the public :class:`ScriptedBackend`."""

from __future__ import annotations

import threading

import pytest

from modelladder import Choice, Ladder, Resolved, ScriptedBackend, Step, Unresolved
from modelladder.backends import BackendError, Generation, GenerationParams, backend_names, open_backend
from modelladder.backends.registry import GROUP, backend_factory
from modelladder.backends.scripted import Call
from modelladder.fleet import FleetError, parse_fleet

PARAMS = GenerationParams()


def test_the_package_registers_its_three_backends() -> None:
    assert {"llamacpp", "openai", "reference"} <= set(backend_names())
    assert GROUP == "modelladder.backends"


def test_fleet_validation_and_open_backend_agree_on_unknown_names() -> None:
    with pytest.raises(FleetError, match="backend must be one of"):
        parse_fleet({"rung": [{"name": "x", "backend": "nope", "params": 1}]})
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        backend_factory("nope")


def test_reference_rung_only_opens_inside_the_bench() -> None:
    fleet = parse_fleet({"rung": [{"name": "ref", "backend": "reference", "params": 1, "latency_s": 1.0}]})
    with pytest.raises(BackendError, match="only exists inside `modelladder bench`") as info:
        open_backend(fleet.rungs[0])
    assert info.value.code == "model_missing"


def test_scripted_backend_answers_from_its_handler_and_records_calls() -> None:
    backend = ScriptedBackend("s", lambda call: call.last_content.upper(), latency_s=0.25)
    gen = backend.generate([{"role": "user", "content": "hi"}], None, PARAMS)
    assert gen.text == "HI" and gen.latency_s == 0.25
    assert [c.last_content for c in backend.calls] == ["hi"]
    assert isinstance(backend.calls[0], Call) and backend.calls[0].params is PARAMS


def test_replaying_repeats_the_last_answer_and_raises_scripted_errors() -> None:
    err = BackendError("timeout", "scripted")
    backend = ScriptedBackend.replaying("s", [err, Generation("b", 1, 1, 0.1)])
    with pytest.raises(BackendError):
        backend.generate([{"role": "user", "content": "x"}], None, PARAMS)
    assert backend.generate([{"role": "user", "content": "x"}], None, PARAMS).text == "b"
    assert backend.generate([{"role": "user", "content": "x"}], None, PARAMS).text == "b"
    with pytest.raises(ValueError):
        ScriptedBackend.replaying("s", [])


def test_ladder_escalates_past_a_scripted_failure() -> None:
    fleet = parse_fleet({"rung": [
        {"name": "small", "backend": "openai", "url": "http://127.0.0.1:9", "params": 1},
        {"name": "big", "backend": "openai", "url": "http://127.0.0.1:9", "params": 2},
    ]})  # fmt: skip
    small = ScriptedBackend("small", lambda call: "neither")
    big = ScriptedBackend("big", lambda call: "a")
    result = Ladder(fleet, backends={"small": small, "big": big}).run(
        Step("route", Choice(["a", "b"])), [{"role": "user", "content": "pick"}]
    )
    assert isinstance(result, Resolved) and result.value == "a"
    assert len(small.calls) == len(big.calls) == 1
    broken = ScriptedBackend("small", lambda call: 1 / 0)  # type: ignore[arg-type, return-value]
    result = Ladder(fleet, backends={"small": broken, "big": broken}).run(
        Step("route", Choice(["a", "b"])), [{"role": "user", "content": "pick"}]
    )
    assert isinstance(result, Unresolved) and result.attempts[0].error == "internal"


def test_scripted_backend_counts_concurrent_calls() -> None:
    backend = ScriptedBackend("s", lambda call: "ok")
    threads = [threading.Thread(target=backend.generate, args=([{"role": "user", "content": "x"}], None, PARAMS))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(backend.calls) == 8


def test_an_openai_rung_with_local_prompt_sends_what_a_local_rung_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``local_prompt``: the contract's instructions in the prompt, no response_format/tools,
    the reply's text as the output (a distilled specialist behind a serving engine)."""
    from openai.types.chat import ChatCompletion

    from modelladder.backends.prompting import prepare_messages

    def rung(**kw: object) -> dict[str, object]:
        return {"name": "spec", "backend": "openai", "url": "http://127.0.0.1:9/v1", "model": "mood-v1",
                "params": 1, **kw}  # fmt: skip

    seen: list[dict[str, object]] = []

    def create(**request: object) -> ChatCompletion:
        seen.append(request)
        return ChatCompletion.model_validate(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "mood-v1",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": " zorblax\n"},
                    }
                ],
            }  # fmt: skip
        )

    contract = Choice(["zorblax", "quimble"])
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "The movie was good."},
    ]
    for local in (True, False):
        backend = open_backend(parse_fleet({"rung": [rung(local_prompt=local)]}).rungs[0])
        monkeypatch.setattr(backend._client.chat.completions, "create", create)
        g = backend.generate(messages, contract, GenerationParams(max_tokens=4))
        if local:
            assert seen[-1]["messages"] == prepare_messages(messages, contract)
            assert "response_format" not in seen[-1] and "tools" not in seen[-1]
            assert g.text == "zorblax" and contract.validate(g.text).ok
        else:  # the default: the messages as sent, the contract as the endpoint understands it
            assert seen[-1]["messages"] == messages and "response_format" in seen[-1]
    with pytest.raises(FleetError, match="local_prompt"):
        parse_fleet({"rung": [{"name": "l", "backend": "llamacpp", "path": "x.gguf", "params": 1,
                               "local_prompt": True}]})  # fmt: skip
    with pytest.raises(FleetError, match="local_prompt"):
        parse_fleet({"rung": [rung(local_prompt="yes")]})
