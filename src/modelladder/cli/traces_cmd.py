"""``modelladder traces``: list, inspect and export recorded step runs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelladder.cli import main
from modelladder.cli._common import TRACE_STORE, TRACE_STORE_HELP, fail
from modelladder.traces import RunRecord, TraceStore, TraceStoreError, UnknownRunError
from modelladder.traces.paths import default_traces_location, is_postgres_url

__all__ = ["EXPORT_FORMATS", "F", "SHORT_ID", "export_cmd", "list_cmd", "show_cmd", "traces"]

F = TypeVar("F", bound=Callable[..., Any])

EXPORT_FORMATS = ("jsonl",)


def _db_option(f: F) -> F:
    return click.option(
        "--db",
        type=TRACE_STORE,
        default=None,
        help=TRACE_STORE_HELP,
    )(f)


def _open(db: Path | str | None) -> TraceStore:
    """The existing store (never created here); a missing or unreachable one is one error line."""
    location = db if db is not None else default_traces_location()
    if not is_postgres_url(location) and not Path(location).exists():
        hint = (
            ""
            if db is not None
            else " (nothing recorded yet? set MODELLADDER_HOME or MODELLADDER_TRACES, or pass --db)"
        )
        fail(f"no trace store at {location}{hint}")
    try:
        store = TraceStore(location, create=False)
    except TraceStoreError as exc:
        fail(str(exc))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # closed when the command ends, whether or not the caller closes it
        ctx.call_on_close(store.close)
    return store


def _console() -> Console:
    return Console(highlight=False)


def _t(value: Any, style: str | None = None) -> Text:
    """Plain text, never parsed as rich markup (model output may contain ``[...]``)."""
    return Text("-" if value is None else str(value), style=style or "")


def _time(dt: datetime | None) -> str:
    return "-" if dt is None else dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _cost(usd: float) -> str:
    return "-" if not usd else f"${usd:.4f}"


def _clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more chars; --full shows all]"


def _outcome(outcome: str, reason: str | None = None) -> Text:
    if outcome == "resolved":
        return Text("resolved", style="green")
    return Text(f"unresolved ({reason})" if reason else "unresolved", style="red")


def _feedback(success: bool | None) -> Text:
    if success is None:
        return Text("-")
    return Text("good", style="green") if success else Text("bad", style="red")


@main.group("traces")
def traces() -> None:
    """Inspect and export recorded step runs."""


SHORT_ID = 12


@traces.command("list")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--step", default=None, help="Only runs of this step.")
@click.option("--outcome", type=click.Choice(["resolved", "unresolved"]), default=None)
@click.option("--tag", default=None, metavar="KEY=VALUE", help="Only runs with this tag.")
@click.option("--full-ids", is_flag=True, help=f"Show whole run ids (default: the first {SHORT_ID} chars).")
@_db_option
def list_cmd(
    limit: int, step: str | None, outcome: str | None, tag: str | None, full_ids: bool, db: Path | str | None
) -> None:
    """The most recent runs, newest first. `traces show` accepts the shortened ids."""
    tag_filter: tuple[str, str] | None = None
    if tag is not None:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            fail(f"--tag must look like KEY=VALUE, not {tag!r}")
        tag_filter = (key, value)
    with _open(db) as store:
        runs = store.list_runs(limit=limit, step=step, outcome=outcome, tag=tag_filter)
        total = store.count_runs(step=step, outcome=outcome, tag=tag_filter)
    console = _console()
    if not runs:
        console.print("no runs recorded" + (" matching the filters" if step or outcome or tag else ""))
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0))
    table.add_column("run id", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("step", overflow="fold", min_width=8)
    table.add_column("outcome", no_wrap=True)
    table.add_column("rung", overflow="fold", min_width=6)
    table.add_column("tries", justify="right", no_wrap=True)
    table.add_column("latency", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("fb", no_wrap=True)
    for r in runs:
        table.add_row(
            _t(r.run_id if full_ids else r.run_id[:SHORT_ID]),
            _t(r.created_at.astimezone().strftime("%m-%d %H:%M:%S")),
            _t(r.step),
            _outcome(r.outcome),
            _t(r.rung),
            _t(r.n_attempts),
            _t(f"{r.latency_s:.2f}s"),
            _t(_cost(r.cost_usd)),
            _feedback(r.feedback_success),
        )
    console.print(table)
    console.print(Text(f"{len(runs)} of {total} runs", style="dim"))


def _find(store: TraceStore, run_id: str) -> RunRecord:
    try:
        return store.get_run(run_id)
    except UnknownRunError:
        matches = store.match_run_ids(run_id, limit=6) if run_id else []
        if len(matches) == 1:
            return store.get_run(matches[0])
        if matches:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            fail(f"run id prefix {run_id!r} is ambiguous: {shown}")
        fail(f"no run with id {run_id!r} in the trace store {store.path}")


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if message.get("tool_calls"):
        text += (
            ("\n" if text else "") + "tool_calls: " + json.dumps(message["tool_calls"], ensure_ascii=False)
        )
    return text


@traces.command("show")
@click.argument("run_id")
@click.option("--full", is_flag=True, help="Do not shorten long messages and outputs.")
@_db_option
def show_cmd(run_id: str, full: bool, db: Path | str | None) -> None:
    """One run: its input, outcome and every attempt (RUN_ID may be a unique prefix)."""
    with _open(db) as store:
        run = _find(store, run_id)
    limit = None if full else 400
    console = _console()

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", _t(run.run_id))
    head.add_row("time", _t(_time(run.created_at)))
    head.add_row("step", _t(run.step))
    head.add_row("contract", _t(run.contract_digest or "none (free text)"))
    head.add_row("outcome", _outcome(run.outcome, run.reason))
    if run.rung:
        head.add_row("rung", _t(f"{run.rung} ({run.placement})"))
    head.add_row("latency", _t(f"{run.latency_s:.3f}s"))
    head.add_row("cost", _t(_cost(run.cost_usd)))
    head.add_row("tokens", _t(f"{run.prompt_tokens} prompt + {run.completion_tokens} completion"))
    if run.tags:
        head.add_row("tags", _t(", ".join(f"{k}={v}" for k, v in sorted(run.tags.items()))))
    fb = _feedback(run.feedback_success)
    if run.feedback_note:
        fb.append(f" - {run.feedback_note}")
    if run.feedback_at:
        fb.append(f" ({_time(run.feedback_at)})", style="dim")
    head.add_row("feedback", fb)
    console.print(head)

    console.print(Text("\ninput", style="bold"))
    for m in run.messages:
        line = Text(f"  {m.get('role', '?')}: ", style="cyan")
        line.append(_clip(_content(m), limit))
        console.print(line)
    if run.text is not None:
        console.print(Text("\nanswer", style="bold"))
        console.print(_t(_clip(run.text, limit)))

    console.print(Text(f"\nattempts ({len(run.attempts)})", style="bold"))
    for a in run.attempts:
        title = Text(f"#{a.index} {a.rung} ({a.placement})", style="bold")
        if a.accepted:
            title.append("  accepted", style="green")
        console.print(title)
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim")
        grid.add_column()
        if a.verdict_ok is None:
            verdict = Text("no verdict", style="yellow")
        elif a.verdict_ok:
            verdict = Text("ok", style="green")
        else:
            verdict = Text(f"failed: {a.verdict_reason}", style="red")
            if a.verdict_detail:
                verdict.append(f" - {a.verdict_detail}", style="")
        grid.add_row("verdict", verdict)
        if a.n_value_tokens is not None:
            mean = "-" if a.mean_logprob is None else f"{a.mean_logprob:.3f}"
            low = "-" if a.min_logprob is None else f"{a.min_logprob:.3f}"
            grid.add_row(
                "confidence", _t(f"mean logprob {mean}, min {low} over {a.n_value_tokens} value tokens")
            )
        cached = f" ({a.cached_prompt_tokens} cached)" if a.cached_prompt_tokens else ""
        grid.add_row("tokens", _t(f"{a.prompt_tokens} prompt{cached} + {a.completion_tokens} completion"))
        grid.add_row("latency", _t(f"{a.latency_s:.3f}s, cost {_cost(a.cost_usd)}"))
        if a.finish_reason:
            grid.add_row("finish", _t(a.finish_reason))
        if a.error:
            grid.add_row("error", _t(f"{a.error}: {a.error_detail}" if a.error_detail else a.error, "red"))
        if a.escalation_reason:
            grid.add_row("escalation", _t(a.escalation_reason, "yellow"))
        grid.add_row("output", _t(_clip(a.text, limit) if a.text else "(empty)"))
        console.print(grid)


@traces.command("export")
@click.option("--format", "fmt", default="jsonl", show_default=True, help="Output format (only jsonl).")
@click.option("--step", default=None, help="Only runs of this step.")
@click.option("--out", "out", default="-", show_default=True, help="Output file, or - for stdout.")
@click.option("--include-unresolved", is_flag=True, help="Also export unresolved runs (last attempt text).")
@click.option("--include-failed-feedback", is_flag=True, help="Keep runs whose feedback was negative.")
@click.option("--metadata", "with_metadata", is_flag=True, help='Add a top-level "metadata" object per line.')
@_db_option
def export_cmd(
    fmt: str,
    step: str | None,
    out: str,
    include_unresolved: bool,
    include_failed_feedback: bool,
    with_metadata: bool,
    db: Path | str | None,
) -> None:
    """Resolved runs as OpenAI chat fine-tuning JSONL (one {"messages": [...]} per line)."""
    if fmt.lower() not in EXPORT_FORMATS:
        fail(f"unsupported export format {fmt!r} (supported: {', '.join(EXPORT_FORMATS)})")
    options: dict[str, Any] = {
        "step": step,
        "include_unresolved": include_unresolved,
        "exclude_failed_feedback": not include_failed_feedback,
        "with_metadata": with_metadata,
    }
    with _open(db) as store:
        if out == "-":
            n = store.export_chat_jsonl(sys.stdout, **options)
            sys.stdout.flush()
            dest = "stdout"
        else:
            target = Path(out).expanduser()
            if target.is_dir():
                fail(f"--out {out} is a directory")
            if not target.parent.is_dir():
                fail(f"the directory of --out {out} does not exist")
            # Write next to the target and rename: a failed export never leaves a half-written file.
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as fp:
                    n = store.export_chat_jsonl(fp, **options)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            dest = str(target)
    click.echo(f"exported {n} run{'s' if n != 1 else ''} to {dest}", err=True)
