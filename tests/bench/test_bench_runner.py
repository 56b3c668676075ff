"""The BFCL bench runner without a model: reference rung, fleet preparation, resume,
failures recorded as items, gate replay against the real ladder, calibration, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval")

from click.testing import CliRunner  # noqa: E402

from modelladder.backends.base import BackendError, GenerationParams  # noqa: E402
from modelladder.bench.bfcl.data import load_items  # noqa: E402
from modelladder.bench.bfcl.reference import DECLINE_TEXT, ReferenceBackend, estimate_tokens  # noqa: E402
from modelladder.bench.bfcl.score import reference_answer, score  # noqa: E402
from modelladder.bench.runner import (  # noqa: E402
    BenchConfig,
    BenchInputError,
    BfclRunner,
    load_bench_fleet,
    make_step,
    prepare_fleet,
    read_results,
    result_record,
    run_bench,
)
from modelladder.bench.sweep import (  # noqa: E402
    replay_item,
    sweep,
)
from modelladder.contracts import ToolCalls  # noqa: E402
from modelladder.fleet import parse_fleet  # noqa: E402
from modelladder.ladder import Ladder, Policy  # noqa: E402
from tests.support.bench import FLEET_TOML, bfcl_backend, exploding_backend, seen  # noqa: E402

# A fleet whose edge rungs are OpenAI-compatible servers at the edge (usable without any
# model file); the tests plug scripted backends in by name.
CATS = ["simple_python", "multiple", "parallel", "live_simple", "irrelevance"]


@pytest.fixture(scope="module")
def items():
    out = []
    for c in CATS:
        out.extend(load_items(c, 8))
    return out


@pytest.fixture
def fleet_file(tmp_path):
    p = tmp_path / "fleet.toml"
    p.write_text(FLEET_TOML)
    return p


def fakes(items):
    return {"tiny": bfcl_backend("tiny", items, 0.3), "small": bfcl_backend("small", items, 0.9)}


# ----------------------------------------------------------------------------- reference


def test_reference_backend_answers_the_accepted_answer(items):
    ref = ReferenceBackend("reference", latency_s=1.25)
    ref.register(items)
    for it in items:
        contract = ToolCalls(it.tools, parallel=it.parallel, allow_no_call=True)
        gen = ref.generate(it.messages, contract, GenerationParams())
        verdict = contract.validate(gen.text)
        assert verdict.ok, (it.id, verdict)
        if it.is_irrelevance:
            assert gen.text == DECLINE_TEXT and verdict.value == []
        else:
            assert verdict.value == reference_answer(it)
        assert score(it, verdict.value).valid, it.id
        assert gen.latency_s == 1.25
        assert gen.token_logprobs == []  # no confidence signal: the gate always passes it
        assert gen.completion_tokens == estimate_tokens(gen.text)
        assert gen.prompt_tokens >= estimate_tokens(it.messages[-1]["content"])


def test_reference_backend_does_not_sleep(items):
    import time

    ref = ReferenceBackend("reference", latency_s=30.0)
    ref.register(items[:1])
    t0 = time.perf_counter()
    ref.generate(items[0].messages, ToolCalls(items[0].tools, allow_no_call=True), GenerationParams())
    assert time.perf_counter() - t0 < 1.0


def test_reference_backend_unknown_and_ambiguous_input():
    ref = ReferenceBackend()
    it = load_items("simple_python", 1)[0]
    contract = ToolCalls(it.tools, allow_no_call=True)
    with pytest.raises(BackendError, match="no registered benchmark item"):
        ref.generate(it.messages, contract, GenerationParams())
    # BFCL holds the same input twice with contradicting answers
    a = next(x for x in load_items("live_simple") if x.id == "live_simple_29-7-2")
    b = next(x for x in load_items("live_irrelevance") if x.id == "live_irrelevance_118-7-8")
    ref.register([a, b])
    c = ToolCalls(a.tools, allow_no_call=True)
    with pytest.raises(BackendError, match="different answers"):
        ref.generate(a.messages, c, GenerationParams())
    with ref.focus(b.id):
        assert ref.generate(a.messages, c, GenerationParams()).text == DECLINE_TEXT
    with ref.focus(a.id):
        assert ref.generate(a.messages, c, GenerationParams()).text.startswith(
            '<tool_call>[{"name": "uber_eat_order"'
        )


def test_reference_from_rung_needs_latency():
    fleet = parse_fleet(
        {"rung": [{"name": "reference", "backend": "reference", "params": 1, "placement": "cloud"}]}
    )
    with pytest.raises(BackendError, match="latency_s"):
        ReferenceBackend.from_rung(fleet.rungs[0])


def test_bench_fleet_file():
    fleet = load_bench_fleet(None)
    names = [r.name for r in fleet.rungs]
    assert names == ["smollm2-135m", "gemma3-270m", "reference"]
    ref = fleet.rung("reference")
    assert ref.backend == "reference" and ref.placement == "cloud"
    assert ref.price_in_per_m == 2.0 and ref.price_out_per_m == 8.0 and ref.latency_s == 1.0
    assert "pricing" in ref.source and "Artificial Analysis" in ref.source
    # its cost is list price x estimated tokens
    assert ref.cost(1000, 100, 1.0) == pytest.approx((1000 * 2.0 + 100 * 8.0) / 1e6)


def test_ladder_with_reference_on_top(items):
    """A ladder whose edge rung always fails ends at the oracle, which the AST checker accepts."""
    fleet = parse_fleet(
        {
            "rung": [
                {"name": "tiny", "backend": "openai", "url": "http://x/v1", "params": 1, "placement": "edge"},
                {"name": "reference", "backend": "reference", "params": 10, "placement": "cloud", "latency_s": 1.0,
                 "price_in_per_m": 2.0, "price_out_per_m": 8.0},
            ]
        }
    )  # fmt: skip
    ref = ReferenceBackend.from_rung(fleet.rung("reference"))
    ref.register(items)
    ladder = Ladder(fleet, backends={"tiny": exploding_backend(), "reference": ref})
    it = items[0]
    res = ladder.run(make_step(it), it.messages)
    assert res.outcome == "resolved" and res.rung == "reference"
    assert res.attempts[0].escalation_reason == "backend:internal"
    assert score(it, res.value).valid
    rec = result_record(it, res, "ladder", ladder=True)
    assert rec["placement"] == "cloud" and rec["accepted_wrong"] is False
    assert rec["latency_s"] == pytest.approx(res.attempts[0].latency_s + 1.0)


# ----------------------------------------------------------------------------- fleet


def test_prepare_fleet_rules(tmp_path):
    base = parse_fleet(
        {
            "rung": [
                {"name": "gone", "backend": "llamacpp", "path": str(tmp_path / "missing.gguf"), "params": 1},
                {
                    "name": "edge-srv",
                    "backend": "openai",
                    "url": "http://x/v1",
                    "params": 2,
                    "placement": "edge",
                },
                {
                    "name": "reference",
                    "backend": "reference",
                    "params": 10,
                    "placement": "cloud",
                    "latency_s": 1.0,
                },
            ]
        }
    )
    p = prepare_fleet(base, "ladder")
    assert [r.name for r in p.fleet.rungs] == ["edge-srv", "reference"]  # an edge server does not replace it
    assert any("gone" in n for n in p.notes)
    with pytest.raises(BenchInputError, match="cannot run here"):
        prepare_fleet(base, "rung:gone")
    with pytest.raises(BenchInputError, match="unknown rung 'nope'"):
        prepare_fleet(base, "rung:nope")
    with pytest.raises(BenchInputError, match="unknown mode"):
        prepare_fleet(base, "laddr")

    cloud = parse_fleet(
        {
            "rung": [
                {
                    "name": "edge-srv",
                    "backend": "openai",
                    "url": "http://x/v1",
                    "params": 2,
                    "placement": "edge",
                },
                {"name": "gpt", "backend": "openai", "url": "http://y/v1", "params": 9, "placement": "cloud"},
                {
                    "name": "reference",
                    "backend": "reference",
                    "params": 10,
                    "placement": "cloud",
                    "latency_s": 1.0,
                },
            ]
        }
    )
    p = prepare_fleet(cloud, "ladder")
    assert [r.name for r in p.fleet.rungs] == ["edge-srv", "gpt"]  # the real cloud rung is used instead
    assert any("reference" in n for n in p.notes)
    assert [r.name for r in prepare_fleet(cloud, "rung:reference").fleet.rungs] == ["reference"]

    dead = parse_fleet({"rung": [{"name": "gone", "backend": "llamacpp", "path": "/nope.gguf", "params": 1}]})
    with pytest.raises(BenchInputError, match="no usable rung"):
        prepare_fleet(dead, "ladder")


# ----------------------------------------------------------------------------- run, resume, failures


def cfg_for(tmp_path, fleet_file, **kw):
    base = dict(
        categories=["simple_python", "irrelevance"],
        out_dir=tmp_path / "out",
        mode="ladder",
        limit=6,
        fleet_path=fleet_file,
        record_traces=False,
        progress=False,
    )
    base.update(kw)
    return BenchConfig(**base)


def test_resume_after_interrupt(tmp_path, fleet_file, items):
    backends = fakes(items)
    cfg = cfg_for(tmp_path, fleet_file)
    first = run_bench(cfg, backends=backends, stop_after=4)
    assert first.ran == 4 and first.summary["complete"] is False
    lines = (cfg.out_dir / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4
    seen_before = list(seen(backends["tiny"], items))

    # a torn line from a kill in the middle of a write is dropped, not fatal
    with (cfg.out_dir / "results.jsonl").open("a") as fh:
        fh.write('{"id": "simple_python_5", "categ')
    backends2 = fakes(items)
    second = run_bench(cfg_for(tmp_path, fleet_file), backends=backends2)
    assert second.skipped == 4 and second.ran == 8
    assert not set(seen(backends2["tiny"], items)) & set(seen_before)  # nothing redone
    ids = [json.loads(line)["id"] for line in (cfg.out_dir / "results.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 12
    assert second.summary["complete"] is True and second.summary["overall"]["n"] == 12

    third = run_bench(cfg_for(tmp_path, fleet_file), backends=fakes(items))
    assert third.ran == 0 and third.skipped == 12
    for name in ("summary.json", "report.html", "run.json"):
        assert (cfg.out_dir / name).is_file()


def test_resume_refuses_a_different_configuration(tmp_path, fleet_file, items):
    run_bench(cfg_for(tmp_path, fleet_file, limit=1), backends=fakes(items))
    with pytest.raises(BenchInputError, match="holds a run with mode='ladder'"):
        run_bench(cfg_for(tmp_path, fleet_file, limit=1, mode="rung:tiny"), backends=fakes(items))


def test_fleet_digest_ignores_fields_at_their_default_and_sees_any_other(fleet_file):
    import dataclasses

    from modelladder.bench.config import PreparedFleet, fleet_digest

    prepared = prepare_fleet(load_bench_fleet(fleet_file), "ladder")
    d = fleet_digest(prepared)

    def with_rung(**kw):
        rungs = [dataclasses.replace(prepared.fleet.rungs[0], **kw), *prepared.fleet.rungs[1:]]
        return PreparedFleet(
            dataclasses.replace(prepared.fleet, rungs=rungs), prepared.policy, prepared.notes
        )

    # a field a newer release adds, left at its default, is not part of the digest...
    assert fleet_digest(with_rung(local_prompt=False)) == d
    # ...but setting it, or changing the policy, is
    assert fleet_digest(with_rung(local_prompt=True)) != d
    assert (
        fleet_digest(PreparedFleet(prepared.fleet, prepared.policy.merged(examples_k=3), prepared.notes)) != d
    )


def test_read_results_tolerates_garbage_tail(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"id": "a", "x": 1}\n{"id": "b"}\n{"id": "c", "trunc')
    assert set(read_results(p)) == {"a", "b"}
    assert p.read_text() == '{"id": "a", "x": 1}\n{"id": "b"}\n'


def test_unparseable_output_is_a_failed_item(tmp_path, fleet_file, items):
    it = load_items("simple_python", 1)[0]
    backends = {
        "tiny": bfcl_backend("tiny", items, behaviours={it.id: "garbage"}),
        "small": exploding_backend(),
    }
    out = run_bench(
        cfg_for(tmp_path, fleet_file, categories=["simple_python"], limit=1, mode="rung:tiny"),
        backends=backends,
    )
    (r,) = out.records
    assert r["ast_valid"] is False and r["outcome"] == "unresolved"
    assert r["ast_error_type"] == "unresolved:contract:parse_error"
    assert r["attempts"][0]["verdict_reason"] == "parse_error" and "broken" in r["attempts"][0]["text"]

    out = run_bench(
        cfg_for(tmp_path / "b", fleet_file, categories=["simple_python"], limit=1, mode="rung:small"),
        backends=backends,
    )
    (r,) = out.records
    assert r["ast_valid"] is False and r["attempts"][0]["error"] == "internal"
    assert "ZeroDivisionError" in r["attempts"][0]["error_detail"]


def test_harness_error_is_recorded_not_raised(tmp_path, fleet_file, items, monkeypatch):
    import modelladder.bench.runner as runner_mod

    def boom(item):
        raise RuntimeError("contract could not be built")

    monkeypatch.setattr(runner_mod, "make_step", boom)
    out = run_bench(
        cfg_for(tmp_path, fleet_file, categories=["simple_python"], limit=2), backends=fakes(items)
    )
    assert [r["outcome"] for r in out.records] == ["error", "error"]
    assert out.records[0]["ast_error_type"] == "bench_error:RuntimeError"


def test_traces_are_tagged(tmp_path, fleet_file, items):
    from modelladder.traces import TraceStore

    db = tmp_path / "t.sqlite"
    out = run_bench(
        cfg_for(tmp_path, fleet_file, categories=["simple_python"], limit=2, record_traces=True, db=db),
        backends=fakes(items),
    )
    store = TraceStore(db, create=False)
    runs = store.list_runs(tag=("bench_run", out.summary["run"]))
    assert len(runs) == 2
    run = store.get_run(out.records[0]["run_ids"][0])
    assert run.tags["bench"] == "bfcl" and run.tags["item"] == "simple_python_0"
    assert run.tags["category"] == "simple_python"


# ----------------------------------------------------------------------------- gate replay


POLICIES = [
    Policy(min_mean_logprob=-0.6, min_token_logprob=-5.0),
    Policy(min_mean_logprob=None, min_token_logprob=None),
    Policy(min_mean_logprob=-0.2, min_token_logprob=None),
    Policy(min_mean_logprob=None, min_token_logprob=-1.0),
    Policy(min_mean_logprob=-0.05, min_token_logprob=-0.1),
    Policy(min_mean_logprob=-0.6, min_token_logprob=-5.0, max_rung="small"),
]


@pytest.mark.parametrize(
    "policy", POLICIES, ids=lambda p: f"{p.min_mean_logprob}/{p.min_token_logprob}/{p.max_rung}"
)
def test_replay_equals_real_ladder(items, policy):
    fleet = parse_fleet(__import__("tomllib").loads(FLEET_TOML))
    prepared = prepare_fleet(fleet, "ladder")
    prepared.policy = policy
    runner = BfclRunner(prepared, "ladder", sweep_gate=True, backends=fakes(items))
    runner.register(items)
    ref = ReferenceBackend.from_rung(fleet.rung("reference"))
    ref.register(items)
    real = Ladder(prepared.fleet, backends={**fakes(items), "reference": ref})
    kinds = set()
    for it in items:
        stored = runner.run_item(it)  # one generation per rung, decision replayed
        replayed = replay_item(stored, prepared.fleet.rungs, policy)
        with ref.focus(it.id):
            res = real.run(make_step(it), it.messages, policy=policy)
        live = result_record(it, res, "ladder", ladder=True)
        assert replayed["rung"] == live["rung"], it.id
        assert replayed["outcome"] == live["outcome"], it.id
        assert replayed["escalations"] == live["escalations"], it.id
        assert replayed["ast_valid"] == live["ast_valid"], it.id
        assert replayed["accepted_wrong"] == live["accepted_wrong"], it.id
        assert replayed["cost_usd"] == pytest.approx(live["cost_usd"], rel=1e-3, abs=1e-5), it.id
        # a backend error's latency is wall-clock time (this machine may be busy): allow some
        assert replayed["latency_s"] == pytest.approx(live["latency_s"], abs=0.25), it.id
        kinds.update(live["escalations"])
        kinds.add(live["rung"])
    if policy.min_mean_logprob == -0.6 and policy.max_rung is None:
        # the scripted behaviours exercise every branch of the gate
        assert {"low_confidence:mean", "truncated", "backend:timeout", "contract:parse_error"} <= kinds
        assert {"tiny", "small", "reference"} <= kinds


def test_sweep_record_main_fields_match_fleet_policy(tmp_path, fleet_file, items):
    out = run_bench(cfg_for(tmp_path, fleet_file, sweep_gate=True), backends=fakes(items))
    fleet = load_bench_fleet(fleet_file)
    for r in out.records:
        assert set(r["rungs"]) == {"tiny", "small", "reference"}
        d = replay_item(r, fleet.rungs, fleet.default_policy)
        assert (d["rung"], d["escalations"], d["ast_valid"]) == (r["rung"], r["escalations"], r["ast_valid"])
        assert [a["rung"] for a in r["attempts"]] == d["chain"]
    sw = out.summary["sweep"]
    assert sw["top_rung"] == "reference" and sw["top_is_reference"] is True
    assert sw["split_sizes"]["calibrate"] + sw["split_sizes"]["report"] == 12
    assert len(sw["grid"]) > 100 and sw["chosen"] is not None
    assert sw["aiq"]["ladder"] is not None
    assert sw["chosen"]["goal"]["categories"] == ["simple_python", "irrelevance"]
    assert sw["chosen"]["goal_ast"]["categories"] == ["simple_python"]  # irrelevance reported apart
    auc = sw["signal_auc"]["tiny"]["report"]
    assert auc["n_right"] + auc["n_wrong"] + auc["no_value_tokens"] > 0


def test_sweep_reuses_earlier_generations(tmp_path, fleet_file, items):
    """A rung:<name> pass feeds a later sweep: same answers, no second generation."""
    first = fakes(items)
    run_bench(cfg_for(tmp_path / "a", fleet_file, mode="rung:tiny"), backends=first)
    assert len(first["tiny"].calls) == 12

    fresh = fakes(items)
    baseline = run_bench(cfg_for(tmp_path / "b", fleet_file, sweep_gate=True), backends=fresh)
    again = fakes(items)
    reused = run_bench(
        cfg_for(tmp_path / "c", fleet_file, sweep_gate=True, reuse=[tmp_path / "a" / "out"]), backends=again
    )
    assert len(again["tiny"].calls) == 0 and len(again["small"].calls) == 12 and reused.reused == 12
    for x, y in zip(baseline.records, reused.records, strict=True):
        assert (x["rung"], x["escalations"], x["ast_valid"]) == (y["rung"], y["escalations"], y["ast_valid"])
        assert y["rungs"]["tiny"]["reused"] is True
        for k in ("ast_valid", "ast_error_type", "calls"):
            assert y["rungs"]["tiny"][k] == x["rungs"]["tiny"][k], (x["id"], k)
    assert reused.summary["sweep"]["chosen"]["label"] == baseline.summary["sweep"]["chosen"]["label"]

    # a rung configured differently is not reused
    other = tmp_path / "other.toml"
    other.write_text(FLEET_TOML.replace("price_per_second = 2.85e-5", "price_per_second = 1e-5", 1))
    again = fakes(items)
    run_bench(
        cfg_for(tmp_path / "d", other, sweep_gate=True, limit=1, reuse=[tmp_path / "a" / "out"]),
        backends=again,
    )
    assert len(again["tiny"].calls) == 2


def test_reuse_needs_sweep_and_a_run_dir(tmp_path, fleet_file, items):
    with pytest.raises(BenchInputError, match="--reuse needs --sweep-gate"):
        run_bench(cfg_for(tmp_path, fleet_file, reuse=[tmp_path]), backends=fakes(items))
    with pytest.raises(BenchInputError, match="not a bench output directory"):
        run_bench(
            cfg_for(tmp_path, fleet_file, sweep_gate=True, reuse=[tmp_path / "nope"]), backends=fakes(items)
        )


def _synthetic(n_per_half=40):
    """Items whose edge answer is right iff its confidence is high, with known costs."""
    recs = []
    for half in ("calibrate", "report"):
        for i in range(n_per_half):
            conf = -i / n_per_half  # 0 .. -1
            right = i < n_per_half * 0.7
            recs.append(
                {
                    "id": f"{half}-{i}",
                    "category": "simple_python",
                    "split": half,
                    "rungs": {
                        "tiny": {"rung": "tiny", "placement": "edge", "ok": True, "n_value_tokens": 3,
                                 "mean_logprob": conf, "min_logprob": conf, "latency_s": 1.0,
                                 "cost_usd": 0.00001, "ast_valid": right, "finish_reason": "stop"},
                        "reference": {"rung": "reference", "placement": "cloud", "ok": True, "n_value_tokens": None,
                                      "latency_s": 1.0, "cost_usd": 0.001, "ast_valid": True, "finish_reason": "stop"},
                    },
                }
            )  # fmt: skip
    return recs


def test_sweep_calibrates_on_one_half_only():
    fleet = parse_fleet(
        {
            "rung": [
                {"name": "tiny", "backend": "openai", "url": "http://x/v1", "params": 1, "placement": "edge"},
                {
                    "name": "reference",
                    "backend": "reference",
                    "params": 10,
                    "placement": "cloud",
                    "latency_s": 1.0,
                },
            ]
        }
    )
    recs = _synthetic()
    res = sweep(recs, fleet.rungs, Policy(), target=0.95)
    ch = res["chosen"]
    assert ch["reached_target_on_calibrate"]
    assert ch["calibrate"]["accuracy"] >= 0.95
    # cheapest point that reaches 95%: every item with confidence < about -0.6 escalated
    cheaper = [
        p
        for p in res["grid"]
        if p["calibrate"]["cost_per_1k_steps_usd"] < ch["calibrate"]["cost_per_1k_steps_usd"]
    ]
    assert all(p["calibrate"]["accuracy"] < 0.95 for p in cheaper)
    assert res["single_rungs"]["tiny"]["calibrate"]["accuracy"] == pytest.approx(0.7)
    assert res["single_rungs"]["reference"]["report"]["accuracy"] == 1.0

    # changing the report half must not move the chosen threshold
    flipped = [dict(r) for r in recs]
    for r in flipped:
        if r["split"] == "report":
            r["rungs"] = {k: {**v, "ast_valid": not v["ast_valid"]} for k, v in r["rungs"].items()}
    res2 = sweep(flipped, fleet.rungs, Policy(), target=0.95)
    assert (res2["chosen"]["min_mean_logprob"], res2["chosen"]["min_token_logprob"]) == (
        ch["min_mean_logprob"],
        ch["min_token_logprob"],
    )
    assert res2["chosen"]["report"]["accuracy"] != ch["report"]["accuracy"]


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELLADDER_HOME", str(tmp_path / "home"))
    from modelladder.cli import bench_cmd, main  # noqa: F401  (registers `bench`)

    return lambda *args: CliRunner().invoke(main, ["bench", "bfcl", *args])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--category", "simple_pythn"], "unknown BFCL category 'simple_pythn'"),
        (["--category", "simple_python,nope"], "unknown BFCL category 'nope'"),
        (["--category", "simple_python", "--limit", "0"], "--limit must be a positive"),
        (["--category", "simple_python", "--limit", "-3"], "--limit must be a positive"),
        (["--category", "simple_python", "--mode", "rung:gpt-9"], "unknown rung 'gpt-9'"),
        (["--category", "simple_python", "--mode", "fastest"], "unknown mode 'fastest'"),
        (
            ["--category", "simple_python", "--mode", "rung:reference", "--sweep-gate"],
            "--sweep-gate needs --mode ladder",
        ),
        (["--category", "simple_python", "--target", "1.5"], "--target must be within"),
        (["--category", "simple_python", "--examples-k", "3"], "--examples-k needs --examples-from"),
        (["--category", "simple_python", "--max-tools", "0"], "--max-tools must be a positive"),
    ],
)
def test_cli_bad_input_exit_2(cli, tmp_path, args, message):
    r = cli(*args, "--out", str(tmp_path / "o"))
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_cli_unwritable_out(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("--category", "simple_python", "--mode", "rung:reference", "--out", str(blocker / "sub"))
    assert r.exit_code == 2 and "is not writable" in r.output
    r = cli("--category", "simple_python", "--mode", "rung:reference", "--out", str(blocker))
    assert r.exit_code == 2 and ("is a file" in r.output or "not a directory" in r.output)


def test_cli_fleet_without_usable_rung(cli, tmp_path):
    f = tmp_path / "f.toml"
    f.write_text('[[rung]]\nname = "x"\nbackend = "llamacpp"\npath = "/no/such.gguf"\nparams = 1\n')
    r = cli("--category", "simple_python", "--fleet", str(f), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "no usable rung" in r.output and "/no/such.gguf" in r.output
    f.write_text("not toml [")
    r = cli("--category", "simple_python", "--fleet", str(f), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "not valid TOML" in r.output
    r = cli(
        "--category", "simple_python", "--fleet", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")
    )
    assert r.exit_code == 2 and "fleet file not found" in r.output


def test_cli_reference_run(cli, tmp_path):
    out = tmp_path / "ref"
    r = cli("--category", "simple_python", "--category", "irrelevance", "--limit", "3", "--mode", "rung:reference",
            "--out", str(out), "--no-progress")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "reference" in r.output and "Not a model" in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["n"] == 6 and summary["overall"]["accuracy"] == 1.0
    assert summary["labels"]["reference"].startswith("reference = the benchmark's own accepted answer")
    assert (out / "report.html").stat().st_size > 1000
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {r["rung"] for r in recs} == {"reference"}
    assert Path(tmp_path / "home" / "traces.sqlite").exists()


def test_items_are_interleaved_across_categories():
    from modelladder.bench.runner import select_items

    ids = [it.id for it in select_items(["simple_python", "irrelevance"], 2)]
    assert ids == ["simple_python_0", "irrelevance_0", "simple_python_1", "irrelevance_1"]


def test_cli_unusable_trace_store(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("--category", "simple_python", "--mode", "rung:reference", "--db", str(blocker / "t.sqlite"),
            "--out", str(tmp_path / "o"))  # fmt: skip
    assert r.exit_code == 2 and "cannot open the trace store" in r.output
