"""``distill eval`` / ``promote`` / ``rollback`` / ``refine`` and the atomic fleet file, with
scripted backends (no model): promotion refusals, history, rollback, changed-fleet errors."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import modelladder.cli.distill_cmd  # noqa: F401  (registers `distill`)
from modelladder import ScriptedBackend
from modelladder.cli import main
from modelladder.distill.dataset import HOLDOUT_INPUTS, DatasetConfig, build_dataset
from modelladder.distill.errors import DistillError, FleetChangedError
from modelladder.distill.evaluate import EvalConfig, evaluate
from modelladder.distill.fleet_file import digest_bytes, dumps_fleet, read_fleet, replace_fleet
from modelladder.distill.promote import PromoteConfig, decide, history_dir, promote, read_history, rollback
from modelladder.distill.refine import RefineConfig, refine
from modelladder.fleet import load_fleet
from modelladder.ladder import eligible_rungs
from modelladder.traces import TraceStore
from tests.support.distill import (
    CITIES,
    FLEET_TOML,
    FixedSource,
    questions,
    record,
    right_answer,
    scripted,
)


def wrong_answer(q: str) -> str:
    return right_answer(q).replace('"city": "', '"city": "Old ')


@pytest.fixture()
def world(tmp_path: Path) -> dict[str, Any]:
    """Traces, a dataset (50/50), a fleet file and a (dummy) adapter file."""
    base = tmp_path / "small.gguf"
    base.write_bytes(b"GGUF placeholder")
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET_TOML.replace('path = "small.gguf"', f'path = "{base}"'))
    db = tmp_path / "traces.sqlite"
    store = TraceStore(db)
    qs = questions(60)
    for q in qs:  # tag each run with its city so the checker source can judge it
        record(store, [q], tags={"app": "test", "city": next(c for c in CITIES if c in q)})
    build_dataset(
        DatasetConfig(step="route", out_dir=tmp_path / "ds", db=db, holdout=0.5, min_train=2),
        store=store,
        source=FixedSource(checker=True),
    )
    store.close()
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"pretend adapter")
    return {
        "tmp": tmp_path,
        "fleet": fleet,
        "db": db,
        "ds": tmp_path / "ds",
        "adapter": adapter,
        "store": store,
    }


def run_eval(w: dict[str, Any], candidate: ScriptedBackend, name: str = "eval.json") -> dict[str, Any]:
    cfg = EvalConfig(
        data_dir=w["ds"], fleet_path=w["fleet"], adapter=w["adapter"], out=w["tmp"] / name, progress=False
    )
    return evaluate(cfg, backends={"candidate": candidate}, source=FixedSource(checker=True))


def test_eval_figures(world: dict[str, Any]) -> None:
    report = run_eval(world, scripted("candidate", right_answer))
    assert report["primary_view"] == "inputs" and set(report["views"]) == {"inputs", "teacher"}
    teacher = report["views"]["teacher"]
    assert teacher["champion"]["accuracy"] == 0.0  # the small rung failed every escalated step
    assert teacher["candidate"]["accuracy"] == 1.0
    inputs = report["views"]["inputs"]
    champ, cand = inputs["champion"], inputs["candidate"]
    assert inputs["n"] == (world["ds"] / HOLDOUT_INPUTS).read_text().count("\n")
    assert champ["counts"]["reused_recorded"] == inputs["n"]  # re-judged from the traces, not run again
    assert cand["counts"]["reused_recorded"] == 0
    assert cand["escalation_rate"] == 0.0 and cand["edge_share"] == 1.0
    assert 0.0 < champ["escalation_rate"] < 1.0
    assert champ["edge_share"] == pytest.approx(1 - champ["escalation_rate"])
    assert champ["cost_per_1k_steps_usd"] > cand["cost_per_1k_steps_usd"]  # escalations pay the cloud price
    assert report["escalation"]["accuracy"] == 1.0 and report["escalation"]["edge_share"] == 0.0
    details = (world["tmp"] / "eval.json.details.jsonl").read_text().splitlines()
    assert len(details) == inputs["n"]
    # each rung's own gate at the same certified alpha: ~30 held-back inputs certify nothing
    cert = report["certified"]
    assert cert["alpha"] == 0.05 and cert["confidence"] == 0.95
    assert cert["candidate"]["n_report"] == cert["champion"]["n_report"] > 0
    assert not cert["candidate"]["certified"] and cert["candidate"]["edge_share"] == 0.0
    assert json.loads(details[0])["candidate"]["features"]["numeric"]["mean_logprob"] == pytest.approx(-0.1)


def test_promote_then_rollback(world: dict[str, Any]) -> None:
    original = world["fleet"].read_bytes()
    run_eval(world, scripted("candidate", right_answer))
    rec = promote(PromoteConfig(eval_path=world["tmp"] / "eval.json", margin=0.05))
    assert rec["action"] == "promote" and rec["rung"] == "small+route-v1"
    text = world["fleet"].read_text()
    assert text.startswith("# test fleet\n")
    fleet = load_fleet(world["fleet"])
    spec = fleet.rung("small+route-v1")
    assert spec.step == "route" and spec.path == fleet.rung("small").path
    assert (
        Path(spec.adapter).is_file() and Path(spec.adapter).parent == history_dir(world["fleet"]) / "adapters"
    )
    assert fleet.steps["route"].first_rung == "small+route-v1"
    assert [r.name for r in eligible_rungs(fleet.policy_for("route"), fleet.rungs)] == [
        "small+route-v1",
        "small",
        "big",
    ]
    assert "small+route-v1" not in [r.name for r in eligible_rungs(fleet.policy_for("other"), fleet.rungs)]
    assert fleet.steps["route"].min_mean_logprob == -0.6  # the step keeps the fleet's gate
    hist = read_history(world["fleet"])
    assert hist[-1]["views"]["inputs"]["candidate"]["accuracy"] == 1.0  # recorded with its evaluation
    assert (history_dir(world["fleet"]) / hist[-1]["eval"]).is_file()

    back = rollback(world["fleet"], "route")
    assert back["promotion"] == rec["id"]
    assert world["fleet"].read_bytes() == original
    with pytest.raises(DistillError, match="no promotion of step 'route'"):
        rollback(world["fleet"], "route")


def test_second_promotion_replaces_the_first_and_rolls_back_in_order(world: dict[str, Any]) -> None:
    original = world["fleet"].read_bytes()
    run_eval(world, scripted("candidate", right_answer))
    promote(PromoteConfig(eval_path=world["tmp"] / "eval.json"))
    after_first = world["fleet"].read_bytes()
    world["adapter"].write_bytes(b"a better adapter")
    # the champion is now v1; its recorded attempts are not v1's, so it runs live
    report = run_eval(world, scripted("candidate", right_answer), "eval2.json")
    assert report["champion"]["rung"] == "small+route-v1"
    world_v1 = {"small+route-v1": scripted("v1", lambda q: wrong_answer(q))}
    cfg = EvalConfig(
        data_dir=world["ds"],
        fleet_path=world["fleet"],
        adapter=world["adapter"],
        out=world["tmp"] / "eval2.json",
        progress=False,
    )
    evaluate(
        cfg,
        backends={"candidate": scripted("candidate", right_answer), **world_v1},
        source=FixedSource(checker=True),
    )
    rec = promote(PromoteConfig(eval_path=world["tmp"] / "eval2.json"))
    assert (
        rec["action"] == "promote"
        and rec["rung"] == "small+route-v2"
        and rec["superseded"] == ["small+route-v1"]
    )
    names = [r.name for r in load_fleet(world["fleet"]).rungs]
    assert names == ["small", "small+route-v2", "big"]
    rollback(world["fleet"], "route")
    assert world["fleet"].read_bytes() == after_first
    rollback(world["fleet"], "route")
    assert world["fleet"].read_bytes() == original


def test_refuses_without_the_margin(world: dict[str, Any]) -> None:
    before = world["fleet"].read_bytes()
    run_eval(world, scripted("candidate", lambda q: "nope" if hash(q) % 3 else right_answer(q)))
    res = CliRunner().invoke(
        main, ["distill", "promote", "--eval", str(world["tmp"] / "eval.json"), "--margin", "60"]
    )
    assert res.exit_code == 1, res.output
    assert "refused" in res.output and "margin" in res.output
    assert world["fleet"].read_bytes() == before
    assert read_history(world["fleet"])[-1]["action"] == "refused"


def test_refuses_when_accepted_wrong_rate_rises(world: dict[str, Any]) -> None:
    def mostly_right(q: str) -> str:
        return wrong_answer(q) if "Lima" in q or "Oslo" in q or "Quito" in q else right_answer(q)

    before = world["fleet"].read_bytes()
    report = run_eval(world, scripted("candidate", mostly_right))
    v = report["views"]["inputs"]
    assert v["candidate"]["accuracy"] > v["champion"]["accuracy"]
    assert v["candidate"]["accepted_wrong_rate"] > v["champion"]["accepted_wrong_rate"]
    rec = promote(PromoteConfig(eval_path=world["tmp"] / "eval.json", margin=0.01))
    assert rec["action"] == "refused"
    assert any("accepted-wrong" in r for r in rec["decision"]["reasons"])
    assert world["fleet"].read_bytes() == before


def test_refuses_more_wrong_answers_in_all_even_at_a_lower_rate() -> None:
    """The distillation proof's case: the specialist is right more often and a smaller share of
    what it lets through is wrong, but it lets through so much more that more steps end wrong."""

    def side(acc: float, aw_rate: float, aw_all: float) -> dict[str, float]:
        return {"n": 215, "accuracy": acc, "accepted_wrong_rate": aw_rate, "accepted_wrong_of_all": aw_all}

    report = {
        "primary_view": "inputs",
        "champion": {"rung": "smollm2-135m"},
        "views": {"inputs": {"candidate": side(0.326, 0.639, 0.577), "champion": side(0.167, 0.767, 0.460)}},
    }
    d = decide(report, margin=0.05)
    assert not d.promote and any("of all steps" in r for r in d.reasons), d.reasons
    report["views"]["inputs"]["candidate"] = side(0.326, 0.50, 0.40)
    assert decide(report, margin=0.05).promote


def test_stale_evaluations_and_changed_fleets_are_errors(world: dict[str, Any]) -> None:
    run_eval(world, scripted("candidate", right_answer))
    world["fleet"].write_text(world["fleet"].read_text() + "\n# edited by hand\n")
    res = CliRunner().invoke(main, ["distill", "promote", "--eval", str(world["tmp"] / "eval.json")])
    assert res.exit_code == 2 and "changed since the evaluation" in res.output
    run_eval(world, scripted("candidate", right_answer))
    world["adapter"].write_bytes(b"retrained in the meantime")
    with pytest.raises(DistillError, match="not the one that was evaluated"):
        promote(PromoteConfig(eval_path=world["tmp"] / "eval.json"))
    run_eval(world, scripted("candidate", right_answer))
    promote(PromoteConfig(eval_path=world["tmp"] / "eval.json"))
    world["fleet"].write_text(
        world["fleet"].read_text().replace("min_mean_logprob = -0.6", "min_mean_logprob = -0.5")
    )
    res = CliRunner().invoke(main, ["distill", "rollback", "--step", "route", "--fleet", str(world["fleet"])])
    assert res.exit_code == 2 and "no longer the one promotion" in res.output


def test_replace_fleet_is_atomic_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET_TOML)
    snap = read_fleet(path)
    with pytest.raises(FleetChangedError, match="changed since it was read"):
        replace_fleet(path, FLEET_TOML, "0" * 64)
    with pytest.raises(DistillError, match="invalid fleet"):
        replace_fleet(path, "[[rung]]\nname = 'x'\n", snap.digest)

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DistillError, match="No space left"):
        replace_fleet(path, FLEET_TOML.replace("-0.6", "-0.7"), snap.digest)
    monkeypatch.undo()
    assert path.read_text() == FLEET_TOML
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fleet.toml.lock", "fleet.toml"] or sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["fleet.toml"]
    new = replace_fleet(path, FLEET_TOML.replace("-0.6", "-0.7"), snap.digest)
    assert new == digest_bytes(path.read_bytes())


@pytest.mark.parametrize("name", ["default_fleet.toml", "bench/bfcl/fleet.toml"])
def test_fleet_toml_round_trip(name: str) -> None:
    import modelladder

    text = (Path(modelladder.__file__).parent / name).read_text()
    data = tomllib.loads(text)
    data.setdefault("step", {})["route"] = {"first_rung": "smollm2-135m", "max_attempts": 2}
    assert tomllib.loads(dumps_fleet(data)) == data


def test_refine_noop_then_promote_then_noop(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import modelladder.distill.refine as refine_mod
    import modelladder.distill.train as train_mod

    def fake_train(cfg: Any) -> Any:
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter.gguf").write_bytes(b"fresh adapter")
        return train_mod.TrainResult(out, out / "adapter", out / "adapter.gguf", {"train_seconds": 0.1})

    def fake_eval(cfg: Any) -> Any:
        return evaluate(
            cfg, backends={"candidate": scripted("candidate", right_answer)}, source=FixedSource(checker=True)
        )

    monkeypatch.setattr(train_mod, "train", fake_train)
    monkeypatch.setattr(refine_mod, "evaluate", fake_eval)
    cfg = RefineConfig(
        step="route",
        fleet_path=world["fleet"],
        db=world["db"],
        min_new_traces=1000,
        holdout=0.5,
        min_train=2,
        step_def="tests.support.distill:STEP",
        progress=False,
    )
    assert refine(cfg)["action"] == "noop"
    cfg.min_new_traces = 10
    res = refine(cfg)
    assert res["action"] == "promote", res
    assert load_fleet(world["fleet"]).steps["route"].first_rung == "small+route-v1"
    state = json.loads((history_dir(world["fleet"]) / "refine-route.json").read_text())
    assert state["last_result"] == "promote" and state["watermark"]
    again = refine(cfg)
    assert again["action"] == "noop" and again["new_traces"] == 0


def test_refine_never_writes_a_fleet_that_changed_meanwhile(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelladder.distill.refine as refine_mod
    import modelladder.distill.train as train_mod

    def train_while_someone_edits(cfg: Any) -> Any:
        world["fleet"].write_text(world["fleet"].read_text() + "\n# someone else's change\n")
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter.gguf").write_bytes(b"adapter")
        return train_mod.TrainResult(out, out / "adapter", out / "adapter.gguf", {})

    monkeypatch.setattr(train_mod, "train", train_while_someone_edits)
    monkeypatch.setattr(
        refine_mod,
        "evaluate",
        lambda cfg: evaluate(
            cfg, backends={"candidate": scripted("candidate", right_answer)}, source=FixedSource(checker=True)
        ),
    )
    cfg = RefineConfig(
        step="route",
        fleet_path=world["fleet"],
        db=world["db"],
        min_new_traces=1,
        holdout=0.5,
        min_train=2,
        step_def="tests.support.distill:STEP",
        progress=False,
    )
    edited = None
    with pytest.raises(FleetChangedError):
        refine(cfg)
    edited = world["fleet"].read_text()
    assert edited.endswith("# someone else's change\n")
    assert not (history_dir(world["fleet"]) / "refine-route.json").exists()  # watermark not advanced
    res = CliRunner().invoke(
        main,
        [
            "distill",
            "refine",
            "--step",
            "route",
            "--fleet",
            str(world["fleet"]),
            "--db",
            str(world["db"]),
            "--min-new-traces",
            "100000",
        ],
    )
    assert res.exit_code == 0 and "nothing to do" in res.output


def _outcomes(n: int, p_right: Any, seed: int) -> dict[str, Any]:
    """Synthetic holdout outcomes: confidence drawn per example, right with ``p_right(conf)``."""
    import numpy as np

    from modelladder.distill.evaluate import Outcome

    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        conf = float(rng.uniform(-3.0, 0.0))
        numeric = {
            k: conf for k in ("mean_logprob", "min_logprob", "p10_logprob", "p25_logprob", "first_logprob")
        }
        numeric.update(log_value_tokens=1.0, log_completion_tokens=2.0, no_value_tokens=0.0, decision_logprob=0.0,
                       no_decision=1.0, turn_start=0.5, log_tool_results=0.0, decline_at_turn_start=0.0)  # fmt: skip
        out[f"k{i}"] = Outcome(valid=True, accepted=True, correct=bool(rng.uniform() < p_right(conf)),
                               latency_s=0.1, cost_usd=0.0, reason=None, text="",
                               features={"numeric": numeric, "tool": "get_weather", "rung": "r"})  # fmt: skip
    return out


def test_champion_and_challenger_are_compared_at_the_same_certified_alpha() -> None:
    from modelladder.distill.certified import compare_certified

    escalation = {"cost_usd": 0.002, "accuracy": 1.0}
    champion = _outcomes(2400, lambda c: 0.99 if c > -0.6 else 0.4, seed=1)  # sure on its top fifth
    candidate = _outcomes(2400, lambda c: 0.99 if c > -1.5 else 0.6, seed=2)  # sure on its top half
    cert = compare_certified(champion, candidate, alpha=0.05, confidence=0.95, escalation=escalation)
    ch, c = cert["champion"], cert["candidate"]
    assert ch["certified"] and c["certified"] and ch["n_report"] == c["n_report"] > 1000
    assert c["edge_share"] > ch["edge_share"] > 0.05
    assert c["accepted_wrong_rate"] <= 0.05 and ch["accepted_wrong_rate"] <= 0.05  # what was certified
    assert c["cost_per_1k_steps_usd"] < ch["cost_per_1k_steps_usd"]  # fewer escalations to pay for

    def report(cand: dict[str, Any], champ: dict[str, Any]) -> dict[str, Any]:
        side = {"n": 400, "accuracy": 0.9, "accepted_wrong_rate": 0.03, "accepted_wrong_of_all": 0.02}
        return {"primary_view": "inputs", "champion": {"rung": "small"},
                "views": {"inputs": {"candidate": {**side, "accuracy": 0.97}, "champion": side}},
                "certified": {"alpha": 0.05, "confidence": 0.95, "candidate": cand, "champion": champ}}  # fmt: skip

    d = decide(report(c, ch), margin=0.05)
    assert d.promote and any("certified accepted-wrong rate <= 0.05" in r for r in d.reasons)
    assert d.figures["candidate_certified_edge_share"] == c["edge_share"]
    d = decide(report(ch, c), margin=0.05)  # more accurate, but keeps fewer steps at the same alpha
    assert not d.promote and any("keeps fewer steps at the edge" in r for r in d.reasons), d.reasons
    d = decide(report({**c, "certified": False, "edge_share": 0.0}, ch), margin=0.05)
    assert not d.promote and any("cannot certify" in r for r in d.reasons)
