"""``modelladder examples list|show|delete|rebuild|stats|search``: the example index.

The index holds verified answers per step (built from the trace store by ``rebuild``) that the
edge prompt shows as demonstrations and the memo rung answers repeated inputs from. These
commands look at it without changing it (they open it with the embedder it was built with),
except ``delete`` and ``rebuild``. Bad input (an unknown id or key, no index yet) exits 2 with
one message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich import box
from rich.table import Table
from rich.text import Text

from modelladder.cli import main
from modelladder.cli._common import fail
from modelladder.cli.traces_cmd import SHORT_ID, _console, _content, _db_option, _open, _t

if TYPE_CHECKING:
    from modelladder.learning.example_index import Example, ExampleIndex

__all__ = ["delete_cmd", "examples", "list_cmd", "rebuild_cmd", "search_cmd", "show_cmd", "stats_cmd"]

F = TypeVar("F", bound=Callable[..., Any])


def _index_option(f: F) -> F:
    return click.option(
        "--index",
        "index_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Example index file (default: $MODELLADDER_HOME/examples.sqlite).",
    )(f)


def _open_index(path: Path | None, *, embedder: str | None = None, must_exist: bool = True) -> ExampleIndex:
    from modelladder.learning.example_index import ExampleIndex, ExampleIndexError, default_examples_path

    target = path if path is not None else default_examples_path()
    if must_exist and not target.exists():
        fail(f"no example index at {target} (build one: modelladder examples rebuild)")
    try:
        return ExampleIndex(target, embedder=embedder)
    except ExampleIndexError as exc:
        fail(str(exc))


def _find(index: ExampleIndex, example_id: str) -> Example:
    found = index.get(example_id)
    if found is not None:
        return found
    matches = index.match_ids(example_id, limit=6) if example_id else []
    if len(matches) == 1:
        ex = index.get(matches[0])
        if ex is not None:
            return ex
    if matches:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        fail(f"example id prefix {example_id!r} is ambiguous: {shown}")
    fail(f"no example with id {example_id!r} in the index {index.path}")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@main.group("examples")
def examples() -> None:
    """Verified answers per step, for demonstrations and the answer memo."""


@examples.command("list")
@click.option("--key", default=None, help="Only examples of this step key.")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--full-ids", is_flag=True, help=f"Show whole ids (default: the first {SHORT_ID} chars).")
@_index_option
def list_cmd(key: str | None, limit: int, full_ids: bool, index_path: Path | None) -> None:
    """The newest examples, optionally of one step key."""
    with _open_index(index_path) as index:
        rows = index.list(key=key, limit=limit)
        total = index.stats()["keys"].get(key, 0) if key is not None else index.stats()["total"]
    console = _console()
    if not rows:
        console.print("no examples" + (f" of step key {key}" if key else ""))
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    for col in ("id", "time", "key", "source", "query", "answer"):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "time"))
    for ex in rows:
        table.add_row(_t(ex.id if full_ids else ex.id[:SHORT_ID]), _t(_when(ex.created_at)), _t(ex.key),
                      _t(ex.source), _t(_clip(ex.query, 80)), _t(_clip(_value(ex.value), 80)))  # fmt: skip
    console.print(table)
    console.print(Text(f"{len(rows)} of {total} examples", style="dim"))


@examples.command("show")
@click.argument("example_id")
@_index_option
def show_cmd(example_id: str, index_path: Path | None) -> None:
    """One example: its input, query, digest and verified answer (EXAMPLE_ID may be a unique prefix)."""
    with _open_index(index_path) as index:
        ex = _find(index, example_id)
    console = _console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for name, val in (("id", ex.id), ("key", ex.key), ("time", _when(ex.created_at)), ("source", ex.source),
                      ("episode", ex.episode), ("digest", ex.digest), ("query", ex.query)):  # fmt: skip
        head.add_row(name, _t(val))
    console.print(head)
    console.print(Text("\ninput", style="bold"))
    for m in ex.messages:
        line = Text(f"  {m.get('role', '?')}: ", style="cyan")
        line.append(_clip(_content(m), 400))
        console.print(line)
    console.print(Text("\nanswer", style="bold"))
    console.print(_t(ex.text))
    console.print(Text("\nvalue", style="bold"))
    console.print(_t(_value(ex.value)))


@examples.command("delete")
@click.argument("example_id")
@_index_option
def delete_cmd(example_id: str, index_path: Path | None) -> None:
    """Remove one example (EXAMPLE_ID may be a unique prefix). A rebuild brings it back while
    its run stays verified: label the run wrong to keep it out."""
    with _open_index(index_path) as index:
        ex = _find(index, example_id)
        index.delete(ex.id)
    click.echo(f"deleted example {ex.id} (step key {ex.key})")


@examples.command("rebuild")
@click.option("--embedder", type=click.Choice(["bm25", "minilm"]), default=None,
              help="Search by BM25 or MiniLM embeddings (default: what the index has; bm25 for a new one).")  # fmt: skip
@click.option("--key", default=None, help="Rebuild only this step key.")
@_db_option
@_index_option
def rebuild_cmd(
    embedder: str | None, key: str | None, db: Path | str | None, index_path: Path | None
) -> None:
    """Rebuild the index from the trace store's verified, still valid answers."""
    from modelladder.learning.example_index import ExampleIndexError
    from modelladder.learning.example_source import rebuild_from_store

    store = _open(db)
    try:
        with _open_index(index_path, embedder=embedder, must_exist=False) as index:
            report = rebuild_from_store(index, store, key=key)
            where = index.path
    except ExampleIndexError as exc:
        fail(str(exc))
    finally:
        store.close()
    click.echo(
        f"indexed {report.added} example{'s' if report.added != 1 else ''} in {where}; skipped "
        f"{report.skipped_invalid} that no longer validate, {report.skipped_unlabelled} unlabelled, "
        f"{report.skipped_negative} labelled wrong"
    )
    for k, n in sorted(report.keys.items()):
        click.echo(f"  {k}: {n}")


@examples.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_index_option
def stats_cmd(as_json: bool, index_path: Path | None) -> None:
    """The embedder, and the number of examples per step key."""
    with _open_index(index_path) as index:
        st = index.stats()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"{st['path']}: {st['total']} examples, embedder {st['embedder']} ({st['embedder_version']})"
               + ("; needs a rebuild" if st["needs_rebuild"] else ""))  # fmt: skip
    for k, n in st["keys"].items():
        click.echo(f"  {k}: {n}")


@examples.command("search")
@click.argument("key")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--exclude", multiple=True, metavar="ID", help="Leave this example out (repeatable).")
@click.option("--max-distance", type=float, default=None, help="Drop hits farther than this.")
@_index_option
def search_cmd(key: str, query: str, k: int, exclude: tuple[str, ...], max_distance: float | None,
               index_path: Path | None) -> None:  # fmt: skip
    """The K examples of step KEY closest to QUERY."""
    from modelladder.learning.example_index import ExampleIndexError

    with _open_index(index_path) as index:
        keys = index.stats()["keys"]
        if key not in keys:
            known = ", ".join(list(keys)[:10]) or "none"
            fail(f"no examples of step key {key!r} in {index.path} (keys: {known})")
        try:
            hits = index.search(key, query, k, exclude_ids=exclude, max_distance=max_distance)
        except ExampleIndexError as exc:
            fail(str(exc))
    console = _console()
    if not hits:
        console.print(f"no example of {key} matches")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    for col in ("#", "id", "score", "distance", "query", "answer"):
        table.add_column(
            col, overflow="fold", justify="right" if col in ("#", "score", "distance") else "left"
        )
    for i, h in enumerate(hits, 1):
        table.add_row(_t(i), _t(h.example.id[:SHORT_ID]), _t(f"{h.score:.4g}"), _t(f"{h.distance:.4f}"),
                      _t(_clip(h.example.query, 80)), _t(_clip(_value(h.example.value), 80)))  # fmt: skip
    console.print(table)
