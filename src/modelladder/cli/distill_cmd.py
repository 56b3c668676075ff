"""``modelladder distill``: traces -> dataset -> LoRA specialist -> evaluation -> fleet.

Bad input (too few examples, an empty split, no teacher answers, a corrupt checkpoint, a
fleet file that changed under us) exits with code 2 and one ``error:`` line. ``promote``
exits 1 when it refuses (the candidate did not win); ``refine`` exits 0 whether it
promoted, refused or had nothing to do, and says which.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from modelladder.cli import main
from modelladder.cli._common import TRACE_STORE, TRACE_STORE_HELP, fail
from modelladder.distill.errors import DistillError

__all__ = [
    "F", "dataset_cmd", "distill", "eval_cmd", "export_cmd", "print_eval", "promote_cmd", "refine_cmd",
    "rollback_cmd", "train_cmd",
]  # fmt: skip

F = TypeVar("F", bound=Callable[..., Any])
console = Console(highlight=False)


def _tags(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE", param_hint="--tag")
        out[key] = val
    return out


def _run(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except DistillError as exc:
        fail(str(exc))


def _db_option(f: F) -> F:
    return click.option(
        "--db",
        type=TRACE_STORE,
        default=None,
        help=TRACE_STORE_HELP,
    )(f)


def _fleet_option(required: bool) -> Callable[[F], F]:
    def deco(f: F) -> F:
        return click.option(
            "--fleet",
            "fleet_path",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="MODELLADDER_FLEET",
            required=required,
            default=None,
            help="Fleet file (default: $MODELLADDER_FLEET"
            + ("" if required else ", else the bundled fleet")
            + ").",
        )(f)

    return deco


def _selection_options(f: F) -> F:
    opts = [
        click.option(
            "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only runs with this tag (repeatable)."
        ),
        click.option(
            "--teacher-rung",
            "teacher_rungs",
            multiple=True,
            metavar="RUNG",
            help="Count answers of these rungs as teacher answers (default: any rung above the first tried).",
        ),
        click.option(
            "--holdout",
            type=float,
            default=0.2,
            show_default=True,
            help="Share of inputs held out (by hash).",
        ),
        click.option(
            "--dedup-threshold",
            type=float,
            default=0.9,
            show_default=True,
            help="Word-shingle Jaccard at which two inputs count as near-duplicates (1.0: exact only).",
        ),
        click.option("--redact-emails", is_flag=True, help="Replace e-mail addresses with <EMAIL>."),
        click.option("--redact-phones", is_flag=True, help="Replace phone numbers with <PHONE>."),
        click.option(
            "--redact",
            "redact_patterns",
            multiple=True,
            metavar="REGEX",
            help="Replace matches of this regular expression with <REDACTED> (repeatable).",
        ),
        click.option(
            "--max-prompt-tokens",
            type=int,
            default=None,
            help="Shorten training prompts of tool-call steps to this many tokens by leaving out uncalled tools.",
        ),
        click.option(
            "--step-def",
            default=None,
            metavar="MODULE:NAME",
            help="Where the step's contract comes from: a Step or (messages, tags) -> Step; `bfcl` for bench runs.",
        ),
        click.option(
            "--min-train", type=int, default=8, show_default=True, help="Fewest training examples accepted."
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _base_for(fleet_path: Path | None, step: str) -> tuple[Path, str, str]:
    """(GGUF, prompt format, rung name) of the base model a specialist of ``step`` sits on."""
    from modelladder.distill.evaluate import base_rung_for, champion_rung
    from modelladder.fleet import FleetError, load_fleet

    try:
        fleet = load_fleet(fleet_path)
        rung = base_rung_for(fleet, champion_rung(fleet, step))
        return rung.resolve_path(), rung.prompt_format, rung.name
    except FleetError as exc:
        raise DistillError(str(exc)) from exc


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    t = Table(title=title, show_header=False)
    for k, v in rows.items():
        t.add_row(k, str(v))
    return t


@main.group("distill")
def distill() -> None:
    """Distil small LoRA specialists from traces and promote them into the fleet."""


@distill.command("dataset")
@click.option("--step", required=True, help="Step name (as recorded in the traces).")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset directory.",
)
@_db_option
@_fleet_option(required=False)
@click.option(
    "--base",
    "base_gguf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Base GGUF for --max-prompt-tokens (default: the step's first rung in the fleet).",
)
@_selection_options
def dataset_cmd(
    step: str,
    out_dir: Path,
    db: Path | str | None,
    fleet_path: Path | None,
    base_gguf: Path | None,
    tags: tuple[str, ...],
    teacher_rungs: tuple[str, ...],
    holdout: float,
    dedup_threshold: float,
    redact_emails: bool,
    redact_phones: bool,
    redact_patterns: tuple[str, ...],
    max_prompt_tokens: int | None,
    step_def: str | None,
    min_train: int,
) -> None:
    """Build train/holdout chat JSONL and a manifest from the traces of STEP."""
    from modelladder.distill.dataset import DatasetConfig, build_dataset
    from modelladder.traces.paths import default_traces_location

    def go() -> dict[str, Any]:
        fmt = "chat_template"
        base = base_gguf
        if max_prompt_tokens is not None and base is None:
            base, fmt, _ = _base_for(fleet_path, step)
        cfg = DatasetConfig(
            step=step,
            out_dir=out_dir,
            db=db or default_traces_location(),
            tags=_tags(tags),
            teacher_rungs=teacher_rungs,
            holdout=holdout,
            dedup_threshold=dedup_threshold,
            redact_emails=redact_emails,
            redact_phones=redact_phones,
            redact_patterns=redact_patterns,
            max_prompt_tokens=max_prompt_tokens,
            base_gguf=base,
            prompt_format=fmt,
            step_def=step_def,
            min_train=min_train,
        )
        return build_dataset(cfg)

    manifest = _run(go)
    console.print(_kv_table(f"dataset {step} -> {out_dir}", manifest["counts"]))
    console.print(
        f"contract digest {manifest['contract_digest']} ({manifest['contracts']} contract(s)); "
        f"manifest {out_dir / 'manifest.json'}"
    )


@distill.command("train")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset directory.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (adapter/, adapter.gguf, checkpoints/, train_report.json). Rerun to resume.",
)
@_fleet_option(required=False)
@click.option(
    "--base",
    "base_gguf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Base GGUF (default: the step's first rung in the fleet).",
)
@click.option("--rank", type=int, default=8, show_default=True)
@click.option("--alpha", type=float, default=16.0, show_default=True)
@click.option("--dropout", type=float, default=0.0, show_default=True)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--epochs", type=float, default=2.0, show_default=True)
@click.option("--grad-accum", type=int, default=8, show_default=True, help="Examples per optimizer step.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--max-seq-len", type=int, default=2048, show_default=True, help="Longer examples are skipped (counted)."
)
@click.option(
    "--max-minutes", type=float, default=None, help="Stop (after a checkpoint) and finish after this long."
)
@click.option(
    "--checkpoint-every", type=int, default=10, show_default=True, help="Optimizer steps between checkpoints."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--threads", type=int, default=None, help="torch CPU threads (default: all cores, 1 on a busy machine)."
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="auto: bf16 autocast where the hardware has bf16 units.",
)
@click.option("--limit", type=int, default=None, help="Use only the first N training examples.")
@click.option("--fresh", is_flag=True, help="Discard existing checkpoints in --out instead of resuming.")
@click.option("--no-progress", is_flag=True)
def train_cmd(
    data_dir: Path,
    out_dir: Path,
    fleet_path: Path | None,
    base_gguf: Path | None,
    rank: int,
    alpha: float,
    dropout: float,
    lr: float,
    epochs: float,
    grad_accum: int,
    seed: int,
    max_seq_len: int,
    max_minutes: float | None,
    checkpoint_every: int,
    device: str,
    threads: int | None,
    precision: str,
    limit: int | None,
    fresh: bool,
    no_progress: bool,
) -> None:
    """LoRA-train a specialist on a dataset and export it as a GGUF adapter."""

    def go() -> Any:
        from modelladder.distill.dataset import load_manifest
        from modelladder.distill.train import TrainConfig, train

        manifest = load_manifest(data_dir)
        fmt = manifest["filters"].get("prompt_format") or "chat_template"
        base = base_gguf
        if base is None:
            base, fmt, _ = _base_for(fleet_path, manifest["step"])
        cfg = TrainConfig(
            data_dir=data_dir,
            out_dir=out_dir,
            base_gguf=base,
            prompt_format=fmt,
            rank=rank,
            alpha=alpha,
            dropout=dropout,
            lr=lr,
            epochs=epochs,
            grad_accum=grad_accum,
            seed=seed,
            max_seq_len=max_seq_len,
            max_minutes=max_minutes,
            checkpoint_every=checkpoint_every,
            device=device,
            threads=threads,
            precision=precision,
            limit=limit,
            fresh=fresh,
            progress=not no_progress,
        )
        return train(cfg)

    result = _run(go)
    r = result.report
    console.print(
        _kv_table(
            f"trained {r['step']} on {r['examples']} examples",
            {
                "device": f"{r['device']} ({r['threads']} threads, {r['precision']})",
                "steps": f"{r['optimizer_steps']}/{r['total_steps']}",
                "loss": f"{r['first_loss']} -> {r['last_loss']}",
                "seconds": r["train_seconds"],
                "stopped early": r["stopped_early"],
                "adapter": result.gguf,
            },
        )
    )


@distill.command("eval")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--adapter",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Candidate GGUF adapter.",
)
@_fleet_option(required=True)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Evaluation report (JSON)."
)
@click.option(
    "--champion", default=None, help="Rung to compare against (default: the step's current first rung)."
)
@click.option("--limit", type=int, default=None, help="Only the first N examples of each view.")
@click.option(
    "--no-reuse", is_flag=True, help="Run the champion again instead of re-judging its recorded attempts."
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="Certified accepted-wrong rate at which both rungs' own calibrated gates are compared.",
)
@click.option("--confidence", type=float, default=0.95, show_default=True, help="1 - delta, within (0, 1).")
@click.option("--no-progress", is_flag=True)
def eval_cmd(
    data_dir: Path,
    adapter: Path,
    fleet_path: Path,
    out: Path,
    champion: str | None,
    limit: int | None,
    no_reuse: bool,
    alpha: float,
    confidence: float,
    no_progress: bool,
) -> None:
    """Evaluate a candidate adapter against the current first rung on the holdout."""
    from modelladder.distill.evaluate import EvalConfig, evaluate

    if not (0 < alpha < 1 and 0 < confidence < 1):
        fail(f"--alpha ({alpha:g}) and --confidence ({confidence:g}) must be within (0, 1)")

    report = _run(
        lambda: evaluate(
            EvalConfig(
                data_dir=data_dir,
                fleet_path=fleet_path,
                adapter=adapter,
                out=out,
                champion=champion,
                limit=limit,
                reuse_recorded=not no_reuse,
                progress=not no_progress,
                alpha=alpha,
                confidence=confidence,
            )
        )
    )
    print_eval(report)
    console.print(f"report {out}")


def print_eval(report: dict[str, Any]) -> None:
    rows = [
        ("accuracy", "accuracy", "{:.1%}"),
        ("validity", "validity", "{:.1%}"),
        ("gate acceptance", "gate_acceptance", "{:.1%}"),
        ("accepted-wrong (of accepted)", "accepted_wrong_rate", "{:.1%}"),
        ("accepted-wrong (of all)", "accepted_wrong_of_all", "{:.1%}"),
        ("escalation", "escalation_rate", "{:.1%}"),
        ("edge share", "edge_share", "{:.1%}"),
        ("latency p50 s", "latency_p50_s", "{:.2f}"),
        ("cost / 1k steps $", "cost_per_1k_steps_usd", "{:.4f}"),
        ("ladder accuracy", "ladder_accuracy", "{:.1%}"),
    ]
    for view, v in report["views"].items():
        t = Table(title=f"{report['step']}: {view} view, n={v['n']} (reference: {report['reference']})")
        t.add_column("")
        t.add_column(report["champion"]["rung"], justify="right")
        t.add_column("candidate", justify="right")
        for label, key, fmt in rows:
            vals = [v[side].get(key) for side in ("champion", "candidate")]
            t.add_row(label, *("-" if x is None else fmt.format(x) for x in vals))
        console.print(t)
    cert = report.get("certified")
    if cert:
        t = Table(title=f"each rung's own calibrated gate at certified accepted-wrong <= {cert['alpha']:g} "
                        f"(confidence {cert['confidence']:g}), on {cert['candidate']['n_report']} held-back examples")  # fmt: skip
        t.add_column("")
        t.add_column(report["champion"]["rung"], justify="right")
        t.add_column("candidate", justify="right")
        sides = (cert["champion"], cert["candidate"])
        t.add_row("certified", *("yes" if x["certified"] else "no" for x in sides))
        for label, key, fmt in (("edge share", "edge_share", "{:.1%}"),
                                ("accepted-wrong (of kept)", "accepted_wrong_rate", "{:.1%}"),
                                ("cost / 1k steps $", "cost_per_1k_steps_usd", "{:.4f}"),
                                ("ladder accuracy", "ladder_accuracy", "{:.1%}")):  # fmt: skip
            t.add_row(label, *("-" if x.get(key) is None else fmt.format(x[key]) for x in sides))
        console.print(t)


@distill.command("promote")
@click.option("--eval", "eval_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@_fleet_option(required=False)
@click.option(
    "--margin",
    type=float,
    default=5.0,
    show_default=True,
    help="Accuracy points the candidate must gain over the current first rung.",
)
@click.option(
    "--max-accepted-wrong-increase",
    type=float,
    default=0.0,
    show_default=True,
    help="Points the accepted-wrong rate may rise (0: it must not rise).",
)
@click.option("--name", default=None, help="Name of the specialist rung (default: <base>+<step>-vN).")
def promote_cmd(
    eval_path: Path,
    fleet_path: Path | None,
    margin: float,
    max_accepted_wrong_increase: float,
    name: str | None,
) -> None:
    """Make the evaluated specialist the step's first rung, if it wins."""
    from modelladder.distill.promote import PromoteConfig, promote

    record = _run(
        lambda: promote(
            PromoteConfig(
                eval_path=eval_path,
                fleet_path=fleet_path,
                margin=margin / 100,
                max_accepted_wrong_increase=max_accepted_wrong_increase / 100,
                name=name,
            )
        )
    )
    _print_decision(record)
    if record["action"] != "promote":
        raise SystemExit(1)


def _print_decision(record: dict[str, Any]) -> None:
    if record["action"] == "promote":
        console.print(
            f"promoted {record['rung']} as first rung of step {record['step']!r} in {record['fleet']}"
        )
    else:
        console.print(f"refused to promote for step {record['step']!r}:")
    for r in record["decision"]["reasons"]:
        console.print(f"  - {r}", markup=False)


@distill.command("rollback")
@click.option("--step", required=True)
@_fleet_option(required=True)
def rollback_cmd(step: str, fleet_path: Path) -> None:
    """Restore the fleet as it was before STEP's latest promotion."""
    from modelladder.distill.promote import rollback

    record = _run(lambda: rollback(fleet_path, step))
    console.print(f"rolled back {record['rung']} (promotion {record['promotion']}); {fleet_path} restored")


@distill.command("export")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Export directory (llamacpp/, peft/, serve.json, README.md, fleet-rung.toml).",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The specialist as `distill train --out` wrote it.",
)
@_fleet_option(required=False)
@click.option("--step", default=None, help="Or: the specialist that is this step's first rung in --fleet.")
@click.option("--rung", default=None, help="Or: this specialist rung of --fleet.")
@click.option(
    "--base",
    "base_gguf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --run: the base GGUF (default: the one train_report.json names).",
)
@click.option(
    "--name", default=None, help="The adapter's name on the server and the rung's `model` (default: derived)."
)
@click.option(
    "--with-base",
    is_flag=True,
    help="Also write the unquantised base vLLM needs (float32, ~4 bytes per parameter) and the base GGUF.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Host in the commands and the rung's url."
)
@click.option(
    "--port", type=int, default=8080, show_default=True, help="llama.cpp server port in the commands."
)
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
def export_cmd(
    out_dir: Path,
    run_dir: Path | None,
    fleet_path: Path | None,
    step: str | None,
    rung: str | None,
    base_gguf: Path | None,
    name: str | None,
    with_base: bool,
    host: str,
    port: int,
    force: bool,
) -> None:
    """Write a specialist in the forms serving engines load (llama.cpp: GGUF; vLLM: PEFT)."""
    from modelladder.distill.serve_export import README, RUNG_TOML, ExportConfig, export_for_serving

    cfg = ExportConfig(
        out_dir=out_dir,
        run_dir=run_dir,
        fleet_path=fleet_path,
        step=step,
        rung=rung,
        base_gguf=base_gguf,
        name=name,
        with_base=with_base,
        force=force,
        host=host,
        port=port,
    )
    serve = _run(lambda: export_for_serving(cfg))
    a = serve["adapter"]
    console.print(
        f"exported {serve['name']} (step {serve['step']}, rank {a['rank']}) to {out_dir}: "
        f"{README} has the commands, {RUNG_TOML} the fleet rung"
    )
    console.print(" ".join(serve["commands"]["llama_cpp_python"]), markup=False, soft_wrap=True)


@distill.command("refine")
@click.option("--step", required=True)
@_fleet_option(required=True)
@_db_option
@click.option(
    "--min-new-traces",
    type=int,
    default=50,
    show_default=True,
    help="Do nothing unless this many runs of the step arrived since the last refine.",
)
@click.option(
    "--work",
    "work_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Work directory (default: <fleet>.history/refine/<step>).",
)
@_selection_options
@click.option("--epochs", type=float, default=2.0, show_default=True)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--max-minutes", type=float, default=None, help="Training time budget.")
@click.option(
    "--margin", type=float, default=5.0, show_default=True, help="Accuracy points needed to promote."
)
@click.option("--max-accepted-wrong-increase", type=float, default=0.0, show_default=True)
@click.option("--eval-limit", type=int, default=None)
@click.option("--no-progress", is_flag=True)
def refine_cmd(
    step: str,
    fleet_path: Path,
    db: Path | str | None,
    min_new_traces: int,
    work_dir: Path | None,
    tags: tuple[str, ...],
    teacher_rungs: tuple[str, ...],
    holdout: float,
    dedup_threshold: float,
    redact_emails: bool,
    redact_phones: bool,
    redact_patterns: tuple[str, ...],
    max_prompt_tokens: int | None,
    step_def: str | None,
    min_train: int,
    epochs: float,
    lr: float,
    max_minutes: float | None,
    margin: float,
    max_accepted_wrong_increase: float,
    eval_limit: int | None,
    no_progress: bool,
) -> None:
    """Rebuild, retrain, evaluate and promote-or-not in one command (safe on a schedule)."""
    from modelladder.distill.refine import RefineConfig, refine
    from modelladder.traces.paths import default_traces_location

    cfg = RefineConfig(
        step=step,
        fleet_path=fleet_path,
        db=db or default_traces_location(),
        work_dir=work_dir,
        min_new_traces=min_new_traces,
        tags=_tags(tags),
        step_def=step_def,
        teacher_rungs=teacher_rungs,
        holdout=holdout,
        dedup_threshold=dedup_threshold,
        redact_emails=redact_emails,
        redact_phones=redact_phones,
        redact_patterns=redact_patterns,
        max_prompt_tokens=max_prompt_tokens,
        min_train=min_train,
        train={"epochs": epochs, "lr": lr, "max_minutes": max_minutes},
        margin=margin / 100,
        max_accepted_wrong_increase=max_accepted_wrong_increase / 100,
        eval_limit=eval_limit,
        progress=not no_progress,
    )
    result = _run(lambda: refine(cfg))
    if result["action"] == "noop":
        console.print(f"nothing to do: {result['reason']}")
        return
    _print_decision(result["record"])
    console.print(json.dumps({k: v for k, v in result.items() if k != "record"}))


if __name__ == "__main__":
    main()
