"""``distill dataset``: teacher selection, dedup, split stability, redaction, manifest, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import modelladder.cli.distill_cmd  # noqa: F401  (registers `distill` until cli/__init__ does)
from modelladder.cli import main
from modelladder.contracts import ToolCalls
from modelladder.distill.dataset import HOLDOUT, TRAIN, DatasetConfig, build_dataset, read_jsonl
from modelladder.distill.dedup import NearDupIndex, normalise, shingles, split_of
from modelladder.distill.errors import DistillError
from modelladder.distill.redact import Redactor
from modelladder.ladder import Step
from modelladder.traces import TraceStore
from tests.support.distill import (
    STEP,
    TOOLS,
    FixedSource,
    questions,
    record,
    right_answer,
    scripted,
    teacher_ids,
)


@pytest.fixture()
def store(tmp_path: Path) -> TraceStore:
    return TraceStore(tmp_path / "traces.sqlite")


def build(store: TraceStore, out: Path, source: FixedSource | None = None, **kw: object) -> dict:
    params: dict = {"min_train": 2, "holdout": 0.3, **kw}
    cfg = DatasetConfig(step="route", out_dir=out, db=Path(str(store.path)), **params)
    return build_dataset(cfg, store=store, source=source or FixedSource())


def ids_of(path: Path) -> set[str]:
    return {line["metadata"]["run_id"] for line in read_jsonl(path)}


def test_selects_only_teacher_answers(store: TraceStore, tmp_path: Path) -> None:
    results = record(store, questions(60))
    teachers = teacher_ids(results)
    bad = sorted(teachers)[0]
    store.record_feedback(bad, False)
    manifest = build(store, tmp_path / "ds")
    got = ids_of(tmp_path / "ds" / TRAIN) | ids_of(tmp_path / "ds" / HOLDOUT)
    assert got == teachers - {bad}
    c = manifest["counts"]
    assert c["failed_feedback"] == 1
    assert c["first_rung_accepted"] == 60 - len(teachers)
    assert c["train"] + c["holdout"] == len(teachers) - 1
    assert set(manifest["source_run_ids"]["train"]) == ids_of(tmp_path / "ds" / TRAIN)
    assert manifest["contract_digest"] == STEP.contract.digest()
    assert manifest["filters"]["exclude_failed_feedback"] is True


def test_lines_are_in_the_runtime_prompt_format(store: TraceStore, tmp_path: Path) -> None:
    record(store, questions(40))
    build(store, tmp_path / "ds")
    line = read_jsonl(tmp_path / "ds" / TRAIN)[0]
    system, user, answer = line["messages"]
    assert system["role"] == "system" and system["content"] == STEP.contract.instructions()
    assert user["role"] == "user"
    assert answer == {"role": "assistant", "content": right_answer(user["content"])}
    meta = line["metadata"]
    assert meta["teacher_rung"] == "big" and meta["first_rung"] == "small"
    assert meta["input"] == [{"role": "user", "content": user["content"]}]
    assert meta["first_attempt"]["text"] == "not a tool call"
    assert meta["teacher_attempt"]["placement"] == "cloud"


def test_split_is_a_stable_function_of_the_input() -> None:
    keys = [normalise(q) for q in questions(400)]
    held = [k for k in keys if split_of(k, 0.3) == "holdout"]
    assert 0.2 < len(held) / len(keys) < 0.4
    assert all(split_of(k, 0.3) == split_of(k, 0.3) for k in keys)
    # case and punctuation do not move an input across the split
    assert split_of(normalise("Weather in PARIS?!"), 0.5) == split_of(normalise("weather in paris"), 0.5)


def test_rebuild_with_more_traces_never_moves_an_example(store: TraceStore, tmp_path: Path) -> None:
    record(store, questions(50))
    build(store, tmp_path / "a")
    train_a, hold_a = ids_of(tmp_path / "a" / TRAIN), ids_of(tmp_path / "a" / HOLDOUT)
    record(store, questions(60, offset=50))
    build(store, tmp_path / "b")
    train_b, hold_b = ids_of(tmp_path / "b" / TRAIN), ids_of(tmp_path / "b" / HOLDOUT)
    assert train_a <= train_b and hold_a <= hold_b
    assert not (train_b & hold_b)
    assert len(train_b) > len(train_a)


def test_near_duplicate_inputs_are_kept_once(store: TraceStore, tmp_path: Path) -> None:
    always_fail = {"small": scripted("small", lambda q: "nope"), "big": scripted("big", right_answer)}
    qs = questions(12)
    dupes = [
        "WHAT is the weather like in Paris right now??",
        "what is the weather like in paris right now",
        "What is the weather like in Paris right now? Thanks for checking, I plan a long walk by the river "
        "with my old dog and my two kids this afternoon, friend",
        "What is the weather like in Paris right now? Thanks for checking, I plan a long walk by the river "
        "with my old dog and my two kids this afternoon, pal",
    ]
    record(store, qs + dupes, backends=always_fail)
    manifest = build(store, tmp_path / "ds")
    # two exact (after normalisation) copies of qs[0] and one near copy of the long variant
    assert manifest["counts"]["near_duplicates"] == 3
    assert manifest["counts"]["train"] + manifest["counts"]["holdout"] == 13


def test_near_dup_index() -> None:
    idx = NearDupIndex(0.8)
    a = normalise("please book a table for two at the italian place on friday evening at eight")
    idx.add("c", a)
    assert idx.seen("c", a)
    assert idx.seen("c", a.replace("eight", "nine"))
    assert not idx.seen("other-contract", a)
    assert not idx.seen("c", normalise("cancel my subscription to the cooking magazine right away"))
    assert shingles("a b") == frozenset({"a", "b"})
    assert not NearDupIndex(1.0).seen("c", a)


def test_redaction_of_inputs_and_answers(store: TraceStore, tmp_path: Path) -> None:
    mail_step = Step("route", ToolCalls(TOOLS))
    q = "Email jane.doe@example.com that the call with +1 415-555-0134 moved to 2024-05-03, fee $1,250.00"
    ans = '<tool_call>[{"name": "send_email", "arguments": {"to": "jane.doe@example.com", "body": "call +1 415-555-0134 moved"}}]</tool_call>'
    backends = {"small": scripted("small", lambda _: "nope"), "big": scripted("big", lambda _: ans)}
    qs = [q + f" (ticket ORD-{i:04d})" for i in range(0, 400, 37)]
    record(store, qs, step=mail_step, backends=backends)
    manifest = build(
        store,
        tmp_path / "ds",
        redact_emails=True,
        redact_phones=True,
        redact_patterns=(r"ORD-\d{4}",),
        dedup_threshold=1.0,
        source=FixedSource(mail_step),
    )
    lines = read_jsonl(tmp_path / "ds" / TRAIN) + read_jsonl(tmp_path / "ds" / HOLDOUT)
    assert lines
    blob = json.dumps(lines)
    assert "jane.doe" not in blob and "555-0134" not in blob and "ORD-0" not in blob
    assert "<EMAIL>" in blob and "<PHONE>" in blob and "<REDACTED>" in blob
    assert "2024-05-03" in blob and "1,250.00" in blob
    answer = json.loads(lines[0]["messages"][-1]["content"][len("<tool_call>") : -len("</tool_call>")])
    assert answer[0]["arguments"]["to"] == "<EMAIL>"
    assert manifest["filters"]["redaction"] == ["email", "phone", r"regex:ORD-\d{4}"]


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("call 415-555-0134 now", "call <PHONE> now"),
        ("call (415) 555 0134", "call <PHONE>"),
        ("+44 20 7946 0958", "<PHONE>"),
        ("+4915112345678", "<PHONE>"),
        ("on 2024-05-03 at 10:30", "on 2024-05-03 at 10:30"),
        ("order 12345 costs 1,250.00", "order 12345 costs 1,250.00"),
        ("version 1.2.3", "version 1.2.3"),
    ],
)
def test_phone_pattern(text: str, redacted: str) -> None:
    assert Redactor(phones=True).text(text) == redacted


def test_bad_redaction_pattern() -> None:
    with pytest.raises(DistillError, match="not a valid regular expression"):
        Redactor(patterns=("(",))


def test_teacher_answers_failing_todays_contract_are_dropped(store: TraceStore, tmp_path: Path) -> None:
    record(store, questions(40))
    weather_only_city_enum = Step(
        "route",
        ToolCalls(
            [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string", "enum": ["Paris", "Lima", "Oslo"]}},
                            "required": ["city"],
                        },
                    },
                }
            ]
        ),
    )
    manifest = build(store, tmp_path / "ds", source=FixedSource(weather_only_city_enum), min_train=1)
    c = manifest["counts"]
    assert c["teacher_fails_contract_today"] > 0
    assert (
        c["train"] + c["holdout"] + c["teacher_fails_contract_today"] + c["near_duplicates"]
        == c["teacher_answers"]
    )
    for line in read_jsonl(tmp_path / "ds" / TRAIN):
        assert json.loads(line["messages"][-1]["content"][11:-12])[0]["arguments"]["city"] in (
            "Paris",
            "Lima",
            "Oslo",
        )


def test_bad_input_is_one_clear_error(store: TraceStore, tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="no runs of step 'route'"):
        build(store, tmp_path / "ds")
    ok = {"small": scripted("small", right_answer), "big": scripted("big", right_answer)}
    record(store, questions(20), backends=ok)
    with pytest.raises(DistillError, match="no teacher answers"):
        build(store, tmp_path / "ds")
    record(store, questions(6, offset=20))
    with pytest.raises(DistillError, match="too few training examples"):
        build(store, tmp_path / "ds", min_train=50)
    with pytest.raises(DistillError, match="holdout split .* is empty"):
        build(store, tmp_path / "ds", holdout=0.001, min_train=1)
    with pytest.raises(DistillError, match="--holdout"):
        build(store, tmp_path / "ds", holdout=1.5)


def test_max_prompt_tokens_leaves_out_uncalled_tools(store: TraceStore, tmp_path: Path) -> None:
    class CharTokens:  # 1 token per 4 characters of the prompt
        def prompt_ids(self, prepared: list[dict]) -> list[int]:
            return [0] * (sum(len(m["content"]) for m in prepared) // 4)

    record(store, questions(40))
    full = len(STEP.contract.instructions()) // 4
    budget = full - 60  # forces leaving out at least one tool
    cfg = DatasetConfig(
        step="route",
        out_dir=tmp_path / "ds",
        min_train=2,
        holdout=0.3,
        max_prompt_tokens=budget,
        base_gguf=tmp_path / "unused.gguf",
    )
    manifest = build_dataset(cfg, store=store, source=FixedSource(), fmt=CharTokens())
    assert manifest["counts"]["shortened_prompts"] == manifest["counts"]["train"]
    line = read_jsonl(tmp_path / "ds" / TRAIN)[0]
    system = line["messages"][0]["content"]
    assert "get_weather" in system and line["metadata"]["tools_shortened_from"] == 3
    assert "send_email" not in system  # the largest uncalled tool went first
    held = read_jsonl(tmp_path / "ds" / HOLDOUT)[0]["messages"][0]["content"]
    assert "send_email" in held  # the holdout keeps the real prompt


def test_cli_dataset(store: TraceStore, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        main,
        ["distill", "dataset", "--step", "route", "--db", str(store.path), "--out", str(tmp_path / "ds")],
    )
    assert res.exit_code == 2 and "no runs of step 'route'" in res.output
    record(store, questions(40))
    res = runner.invoke(
        main,
        [
            "distill",
            "dataset",
            "--step",
            "route",
            "--db",
            str(store.path),
            "--out",
            str(tmp_path / "ds"),
            "--step-def",
            "tests.support.distill:STEP",
            "--min-train",
            "2",
            "--tag",
            "app=test",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        json.loads((tmp_path / "ds" / "manifest.json").read_text())["step_source"]
        == "tests.support.distill:STEP"
    )
    res = runner.invoke(
        main,
        [
            "distill",
            "dataset",
            "--step",
            "route",
            "--db",
            str(store.path),
            "--out",
            str(tmp_path / "ds2"),
            "--tag",
            "app=test",
        ],
    )
    assert res.exit_code == 2 and "--step-def" in res.output
