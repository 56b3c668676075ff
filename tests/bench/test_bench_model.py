"""``bench bfcl`` on the real bundled SmolLM2-135M (a handful of items, to stay fast)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("bfcl_eval")

from click.testing import CliRunner  # noqa: E402

from modelladder.bench.bfcl.data import load_items  # noqa: E402
from modelladder.bench.bfcl.reference import ReferenceBackend  # noqa: E402
from modelladder.bench.runner import BfclRunner, make_step, prepare_fleet, result_record  # noqa: E402
from modelladder.bench.sweep import replay_item  # noqa: E402
from modelladder.fleet import parse_fleet  # noqa: E402
from modelladder.ladder import Ladder, Policy  # noqa: E402
from tests.support.models import SMOL  # noqa: E402

pytestmark = pytest.mark.model


def test_cli_edge_rung_pass(tmp_path):
    from modelladder.cli import bench_cmd, main  # noqa: F401

    out = tmp_path / "smol"
    args = ["bench", "bfcl", "--category", "simple_python", "--limit", "4", "--mode", "rung:smollm2-135m",
            "--out", str(out), "--no-progress"]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [x["id"] for x in recs] == [f"simple_python_{i}" for i in range(4)]
    for x in recs:
        (a,) = x["attempts"]
        assert a["rung"] == "smollm2-135m" and a["latency_s"] > 0 and a["prompt_tokens"] > 100
        assert a["n_value_tokens"] is not None  # the confidence signals are recorded
        assert x["cost_usd"] == pytest.approx(a["latency_s"] * 2.85e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["overall"]["n"] == 4
        and summary["overall"]["edge_share"] == sum(x["placement"] == "edge" for x in recs) / 4
    )
    assert summary["overall"]["accepted_wrong_rate"] is None  # a single-rung row
    # rerun: nothing left to do, no model call
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "0 items run, 4 already done" in r.output


def test_replay_equals_real_ladder_on_smollm2():
    items = load_items("simple_python", 3) + load_items("irrelevance", 2)
    fleet = parse_fleet(
        {
            "rung": [
                dict(SMOL),
                {"name": "reference", "backend": "reference", "params": 10**12, "placement": "cloud",
                 "latency_s": 1.0, "price_in_per_m": 2.0, "price_out_per_m": 8.0},
            ]
        }
    )  # fmt: skip
    prepared = prepare_fleet(fleet, "ladder")
    runner = BfclRunner(prepared, "ladder", sweep_gate=True)
    runner.register(items)
    stored = [runner.run_item(it) for it in items]  # SmolLM2 once per item
    ref = ReferenceBackend.from_rung(fleet.rung("reference"))
    ref.register(items)
    ladder = Ladder(
        prepared.fleet, backends={"smollm2-135m": runner.ladder.backend(fleet.rungs[0]), "reference": ref}
    )
    for policy in (Policy(min_mean_logprob=-0.6, min_token_logprob=-5.0), Policy(min_mean_logprob=-0.02)):
        for it, rec in zip(items, stored, strict=True):
            replayed = replay_item(rec, prepared.fleet.rungs, policy)
            with ref.focus(it.id):
                live = result_record(
                    it, ladder.run(make_step(it), it.messages, policy=policy), "ladder", ladder=True
                )
            assert (replayed["rung"], replayed["escalations"], replayed["ast_valid"]) == (
                live["rung"],
                live["escalations"],
                live["ast_valid"],
            ), it.id
