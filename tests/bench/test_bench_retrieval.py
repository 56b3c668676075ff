"""``bench bfcl --examples-k``: examples from an earlier run's checker-labelled traces reach the
edge rung as prior turns, only from the other fold (item id hash), never the item's own; the
options' bad input. No model: a scripted edge rung records what it was shown."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("bfcl_eval")

from modelladder import ScriptedBackend  # noqa: E402
from modelladder.backends import Call  # noqa: E402
from modelladder.bench.bfcl.data import load_items  # noqa: E402
from modelladder.bench.retrieval import fold  # noqa: E402
from modelladder.bench.runner import BenchConfig, BenchInputError, run_bench  # noqa: E402
from modelladder.traces import TraceStore  # noqa: E402
from tests.support.bench import FLEET_TOML  # noqa: E402

# live_simple repeats its functions across items (the weather, the file system...), so an
# item often has other-fold items whose verified call validates against its own tools
CATEGORY, N = "live_simple", 80


@pytest.fixture
def reference_run(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET_TOML)
    db = tmp_path / "traces.sqlite"
    cfg = BenchConfig(categories=[CATEGORY], out_dir=tmp_path / "ref", mode="rung:reference", limit=N,
                      fleet_path=fleet, db=db, progress=False)  # fmt: skip
    out = run_bench(cfg)
    return fleet, db, out


def _declining() -> ScriptedBackend:
    return ScriptedBackend("tiny", lambda call: "<tool_call>[]</tool_call>", latency_s=0.1)


def test_reference_answers_are_labelled_by_the_checker(reference_run):
    _, db, out = reference_run
    store = TraceStore(db, create=False)
    rec = out.records[0]
    labels = store.labels(rec["run_ids"][0])
    assert [(lb.kind, lb.value, lb.source) for lb in labels] == [("correct", 1.0, "checker")]
    assert all(r["ast_valid"] for r in out.records)  # the oracle: every label is positive


def test_examples_come_from_the_other_fold_only_and_reach_the_edge_prompt(tmp_path, reference_run):
    fleet, db, ref = reference_run
    item_of = {rid: r["id"] for r in ref.records for rid in r["run_ids"]}
    tiny = _declining()
    cfg = BenchConfig(categories=[CATEGORY], out_dir=tmp_path / "ex", mode="rung:tiny", limit=N,
                      fleet_path=fleet, db=db, progress=False, examples_k=2,
                      examples_from=tmp_path / "ref")  # fmt: skip
    out = run_bench(cfg, backends={"tiny": tiny})
    items = {it.id: it for it in load_items(CATEGORY, N)}
    shown = 0
    for rec, call in zip(out.records, tiny.calls, strict=True):
        examples = (rec["attempts"][0]["shaping"] or {}).get("examples", [])
        sources = [item_of[e["id"]] for e in examples]
        assert rec["id"] not in sources
        assert all(fold(s) != fold(rec["id"]) for s in sources)
        # the demonstrations are prior turns: a user turn and the teacher's call per example,
        # before the item's own request, which stays last
        assert isinstance(call, Call)
        assert call.messages[-1] == items[rec["id"]].messages[-1]
        assert len(call.messages) == len(items[rec["id"]].messages) + 2 * len(examples)
        shown += bool(examples)
    assert shown >= 5, "live_simple's repeated functions should give several items an example"
    summary = json.loads((tmp_path / "ex" / "summary.json").read_text())["shaping"]
    assert summary["examples_k"] == 2 and summary["examples_indexed"] == N
    assert summary["examples_invalid"] > 0  # examples calling tools this item lacks are skipped


def test_examples_options_bad_input(tmp_path, reference_run):
    fleet, db, _ = reference_run
    base = dict(categories=[CATEGORY], mode="rung:tiny", limit=4, fleet_path=fleet, db=db, progress=False)
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    (agent_dir / "run.json").write_text(json.dumps({"name": "agent-x", "bench": "agent", "suite": "steps"}))
    for kw, msg in [
        (dict(examples_k=2), "--examples-k needs --examples-from"),
        (dict(examples_k=-1), "--examples-k must be 0 or more"),
        (dict(examples_k=2, examples_from=agent_dir), "needs an earlier bench bfcl run"),
        (dict(examples_k=2, examples_from=tmp_path / "nowhere"), "not a bench bfcl run directory"),
        (dict(examples_k=2, examples_from=tmp_path / "ref", record_traces=False), "trace store"),
        (dict(max_tools=0), "--max-tools must be a positive number"),
    ]:
        cfg = BenchConfig(out_dir=tmp_path / f"o{len(msg)}", **base, **kw)  # type: ignore[arg-type]
        with pytest.raises(BenchInputError, match=msg):
            run_bench(cfg, backends={"tiny": _declining()})


def test_examples_ids_replace_the_fold_rule_with_an_outside_train_split(tmp_path, reference_run):
    fleet, db, ref = reference_run
    item_of = {rid: r["id"] for r in ref.records for rid in r["run_ids"]}
    train = sorted(item_of.values())[::2]
    ids = tmp_path / "train.ids"
    ids.write_text("\n".join(train) + "\n")
    cfg = BenchConfig(categories=[CATEGORY], out_dir=tmp_path / "ids", mode="rung:tiny", limit=N,
                      fleet_path=fleet, db=db, progress=False, examples_k=2,
                      examples_from=tmp_path / "ref", examples_ids=ids)  # fmt: skip
    out = run_bench(cfg, backends={"tiny": _declining()})
    sources = [
        item_of[e["id"]]
        for r in out.records
        for e in ((r["attempts"][0]["shaping"] or {}).get("examples", []))
    ]
    assert sources and set(sources) <= set(train)
    assert any(fold(s) == fold(r["id"]) for r in out.records
               for s in (item_of[e["id"]] for e in ((r["attempts"][0]["shaping"] or {}).get("examples", []))))  # fmt: skip
    assert all(r["id"] not in [item_of[e["id"]] for e in ((r["attempts"][0]["shaping"] or {}).get("examples", []))]
               for r in out.records)  # fmt: skip
    run = json.loads((tmp_path / "ids" / "run.json").read_text())
    assert run["examples_ids"] == str(ids)
    (tmp_path / "empty.ids").write_text("\n")
    for kw, msg in [(dict(examples_ids=tmp_path / "empty.ids"), "lists no item id"),
                    (dict(examples_ids=tmp_path / "missing.ids"), "cannot read it"),
                    (dict(examples_k=0, examples_ids=ids), "needs --examples-k")]:  # fmt: skip
        bad = BenchConfig(**{**cfg.__dict__, "out_dir": tmp_path / f"b{len(msg)}", **kw})
        with pytest.raises(BenchInputError, match=msg):
            run_bench(bad, backends={"tiny": _declining()})
