"""The example index: verified answers of each step, found again by similarity or exact input.

A small model gets a step right far more often when its prompt shows it two or three answers
to *similar* inputs that are known to be right. This index keeps such answers (what
:mod:`modelladder.learning.example_source` reads out of the trace store), partitioned by step
key -- an example of one step is never a demonstration for another -- and answers two questions:

* :meth:`ExampleIndex.search`: the ``k`` examples of a step most similar to a query (the text
  :func:`~modelladder.learning.example_query.step_query` makes of a conversation), by BM25
  (FTS5's formula, scored in memory over the key's postings by :mod:`.example_bm25`; the text
  stays in an FTS5 table) or by cosine over MiniLM sentence embeddings (the ``retrieval``
  extra); both keep a key's data in memory from its first search until a write.
  ``exclude_ids`` keeps an example out of its own prompt (evaluations must not see the answer
  they are scored on).
* :meth:`ExampleIndex.memo`: an example with exactly the same normalised input
  (:func:`~modelladder.learning.example_query.input_digest`), newest first: an answer memo.

Distances, smaller is closer, so one ``max_distance`` reads the same way for both embedders:
``bm25``: ``score`` is the BM25 score (FTS5's ``-bm25()``) and ``distance = 1 / (1 + score)``,
in (0, 1]; ``minilm``: ``score = cos`` and ``distance = 1 - cos``.

The index is derived data, so bad input is rebuilt, never trusted: a file embedded by another
model (or with another tokenisation) is cleared on open, and a corrupt file is moved aside
(``<name>.corrupt-<timestamp>``) and recreated empty; both log a warning and set
:attr:`ExampleIndex.needs_rebuild` (persisted, so a crash before the rebuild is not forgotten).
A file that is a healthy SQLite database of something else is refused, not moved. Every write
is one transaction: an ``add_many`` or a ``replace`` lands whole or not at all.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelladder.learning.example_bm25 import Bm25, Vocabulary, largest
from modelladder.learning.example_embed import DIM, MINILM_NAME, EmbedderUnavailable, MiniLM, package_version
from modelladder.learning.example_fts import BM25_VERSION, fts_text, ktok
from modelladder.traces.paths import data_dir

__all__ = [
    "EMBEDDERS", "EXAMPLES_FILENAME", "MEMORY", "SCHEMA_VERSION", "Example", "ExampleIndex",
    "ExampleIndexError", "Hit", "default_examples_path",
]  # fmt: skip

log = logging.getLogger("modelladder.learning")

EXAMPLES_FILENAME = "examples.sqlite"
MEMORY = ":memory:"
SCHEMA_VERSION = 1
FORMAT = "modelladder-examples"
EMBEDDERS = ("bm25", "minilm")
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)


def default_examples_path() -> Path:
    """``data_dir() / "examples.sqlite"``, next to the trace store it is built from."""
    return data_dir() / EXAMPLES_FILENAME


class ExampleIndexError(Exception):
    """The example index cannot do what was asked (not an index, newer schema, no embedder)."""


class _Corrupt(Exception):
    """The file is a database whose pages fail SQLite's own check."""


@dataclass(frozen=True)
class Example:
    """One verified answer. ``id`` is the source run's id, ``key`` its step key (the partition),
    ``messages`` its input without system messages, ``value`` the validated value (JSON-able),
    ``text`` the raw output text, ``source`` the label source that verified it, ``created_at``
    the run's time (epoch seconds), ``episode`` the run's episode id (a caller keeps examples of
    the conversation it is answering out of its own prompt)."""

    id: str
    key: str
    query: str
    digest: str
    messages: list[dict[str, Any]]
    value: Any
    text: str
    source: str
    created_at: float
    episode: str | None = None


@dataclass(frozen=True)
class Hit:
    """One search result: higher ``score`` is better, smaller ``distance`` is closer."""

    example: Example
    score: float
    distance: float


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE examples (
    n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, key TEXT NOT NULL, query TEXT NOT NULL,
    digest TEXT NOT NULL, messages TEXT NOT NULL, value TEXT NOT NULL, text TEXT NOT NULL,
    source TEXT NOT NULL, created_at REAL NOT NULL, episode TEXT);
CREATE INDEX examples_key ON examples (key, created_at);
CREATE INDEX examples_memo ON examples (key, digest, created_at);
CREATE VIRTUAL TABLE examples_fts USING fts5(ktok, body, tokenize = "unicode61 tokenchars '_'");
CREATE TABLE vectors (n INTEGER PRIMARY KEY, key TEXT NOT NULL, vec BLOB NOT NULL);
CREATE INDEX vectors_key ON vectors (key);
"""
_TABLES = ("examples", "examples_fts", "vectors", "meta")
_COLUMNS = "n, id, key, query, digest, messages, value, text, source, created_at, episode"


def _example(row: sqlite3.Row) -> Example:
    return Example(id=row["id"], key=row["key"], query=row["query"], digest=row["digest"],
                   messages=json.loads(row["messages"]), value=json.loads(row["value"]), text=row["text"],
                   source=row["source"], created_at=float(row["created_at"]), episode=row["episode"])  # fmt: skip


class ExampleIndex:
    """Verified answers per step key in one SQLite file (WAL), searched by BM25 or MiniLM.

    ``path=None`` means :func:`default_examples_path`, ``":memory:"`` a private index.
    ``embedder`` is ``"bm25"`` or ``"minilm"``; ``None`` (the default) keeps what the file was
    built with (``bm25`` for a new file), so that merely opening an index (the memo rung, the
    CLI) never clears it; naming another embedder clears it for a rebuild. A stored ``minilm``
    index whose model package changed version is cleared either way. Safe to share between
    threads (one lock around the connection).
    """

    def __init__(self, path: str | Path | None = None, *, embedder: str | None = None,
                 timeout: float = 10.0) -> None:  # fmt: skip
        if embedder is not None and embedder not in EMBEDDERS:
            raise ExampleIndexError(f"embedder must be one of {', '.join(EMBEDDERS)}, not {embedder!r}")
        self.path: Path | str = (
            MEMORY if path == MEMORY else Path(path or default_examples_path()).expanduser()
        )
        self._requested = embedder
        self._timeout = timeout
        self._lock = threading.RLock()
        self._minilm: MiniLM | None = None
        self._cache: dict[str, tuple[builtins.list[str], builtins.list[int], np.ndarray]] = {}
        self._sims: dict[str, np.ndarray] = {}  # a preallocated similarity row per cached matrix
        self._bm25: dict[str, Bm25] = {}  # dropped with _cache on any write
        self._vocab: dict[str, Vocabulary] = {}  # each text's term ids: outlives writes
        self._data_version = -1
        self.embedder = embedder or "bm25"
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = self._open()

    # -- opening ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if isinstance(self.path, Path):
            if self.path.is_dir():
                raise ExampleIndexError(f"the example index path {self.path} is a directory")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            self._setup(conn)
        except (sqlite3.DatabaseError, _Corrupt) as exc:
            conn.close()
            corrupt = (
                isinstance(exc, _Corrupt) or (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _CORRUPT_CODES
            )
            if not corrupt or self.path == MEMORY:
                raise ExampleIndexError(f"cannot open the example index {self.path}: {exc}") from exc
            aside = self._move_aside()
            log.warning("the example index %s is corrupt (%s); moved it to %s and started an empty "
                        "one: rebuild it from the trace store", self.path, exc, aside)  # fmt: skip
            conn = self._connect()
            self._setup(conn, reason="corrupt")
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> Path:
        assert isinstance(self.path, Path)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while any(Path(f"{aside}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
            n += 1  # never replace an earlier corrupt copy
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, Path(f"{aside}{suffix}"))
        return aside

    def _identity(self, embedder: str) -> dict[str, str]:
        """What the stored data depends on: an index whose identity differs is rebuilt."""
        version = BM25_VERSION
        if embedder == "minilm":
            try:
                version = f"{MINILM_NAME}@{package_version()}"
            except EmbedderUnavailable as exc:
                raise ExampleIndexError(str(exc)) from exc
            self._minilm = self._minilm or MiniLM()
        return {"embedder": embedder, "embedder_version": version, "fts_version": BM25_VERSION}

    def _setup(self, conn: sqlite3.Connection, reason: str | None = None) -> None:
        """Create, check or clear the schema, in one write transaction (two processes opening a
        new file at once create it once)."""
        if self.path != MEMORY:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        check = conn.execute("PRAGMA quick_check").fetchone()
        if check is not None and check[0] != "ok":
            raise _Corrupt("quick_check: " + " ".join(str(check[0]).split())[:200])
        conn.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            meta: dict[str, str] = {}
            if "meta" in tables:
                meta = {r[0]: r[1] for r in conn.execute("SELECT name, value FROM meta")}
            if tables and meta.get("format") != FORMAT:
                raise ExampleIndexError(
                    f"{self.path} is a SQLite database but not a modelladder example index; pass another path"
                )
            if int(meta.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
                raise ExampleIndexError(
                    f"the example index {self.path} has schema version {meta['schema_version']}, newer "
                    f"than this modelladder understands ({SCHEMA_VERSION}); upgrade modelladder"
                )
            self.embedder = self._requested or meta.get("embedder") or "bm25"
            want = self._identity(self.embedder)
            have = {k: meta.get(k, "") for k in want}
            if not tables or int(meta.get("schema_version", 0)) < SCHEMA_VERSION:
                for t in _TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {t}")
                # one statement at a time: executescript() would COMMIT the transaction
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(stmt)
                rows = {"format": FORMAT, "schema_version": str(SCHEMA_VERSION), **want, "needs_rebuild": "1"}
                conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", rows.items())
                if tables and reason is None:
                    log.warning("the example index %s had an older schema; cleared it: rebuild it", self.path)
            elif have != want:
                log.warning("the example index %s was built with %s, not %s; cleared it (an index is "
                            "never mixed across embedders): rebuild it from the trace store",
                            self.path, have, want)  # fmt: skip
                self._clear(conn)
                conn.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                                 [*want.items(), ("needs_rebuild", "1")])  # fmt: skip
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _clear(conn: sqlite3.Connection, keys: Sequence[str] | None = None) -> int:
        if keys is None:
            n = int(conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0])
            for t in ("examples_fts", "vectors", "examples"):
                conn.execute(f"DELETE FROM {t}")
            return n
        n = 0
        for key in keys:
            sub = "SELECT n FROM examples WHERE key = ?"
            conn.execute(f"DELETE FROM examples_fts WHERE rowid IN ({sub})", (key,))
            conn.execute("DELETE FROM vectors WHERE key = ?", (key,))
            n += conn.execute("DELETE FROM examples WHERE key = ?", (key,)).rowcount
        return n

    # -- connection ---------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ExampleIndexError("the example index is closed")
        if os.getpid() != self._pid:  # inherited across fork(): never use the parent's connection
            self._pid = os.getpid()
            self._conn = self._open()
            self._invalidate()
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._db
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._invalidate()  # what this connection wrote; other writers: data_version

    @property
    def needs_rebuild(self) -> bool:
        """True when the index was created, cleared or recreated and not rebuilt since."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = 'needs_rebuild'").fetchone()
        return row is not None and row[0] == "1"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None
            self._invalidate()
            self._vocab.clear()

    def _invalidate(self) -> None:
        self._cache.clear()
        self._sims.clear()
        self._bm25.clear()

    def __enter__(self) -> ExampleIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExampleIndex({str(self.path)!r}, embedder={self.embedder!r})"

    # -- writing ------------------------------------------------------------------------------

    def embed(self, texts: builtins.list[str]) -> np.ndarray:
        """MiniLM unit vectors of ``texts`` (``minilm`` indexes only)."""
        if self._minilm is None:
            raise ExampleIndexError(f"the {self.embedder} index has no embedding model")
        try:
            return self._minilm.embed(texts)
        except EmbedderUnavailable as exc:
            raise ExampleIndexError(str(exc)) from exc

    def _vectors(self, examples: Sequence[Example], vectors: np.ndarray | None) -> np.ndarray | None:
        if self.embedder != "minilm":
            if vectors is not None:
                raise ExampleIndexError(f"a {self.embedder} index stores no vectors")
            return None
        if vectors is None:  # embedded before the write transaction: a writer never waits on torch
            return self.embed([e.query for e in examples])
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.shape != (len(examples), DIM):
            raise ExampleIndexError(f"vectors must have shape ({len(examples)}, {DIM}), not {vecs.shape}")
        return vecs

    def add(self, example: Example) -> None:
        """Add one example, replacing any with the same id."""
        self.add_many([example])

    def add_many(self, examples: Iterable[Example], *, vectors: np.ndarray | None = None) -> int:
        """Add (upsert by id) examples in one transaction and return how many. ``vectors``:
        precomputed unit vectors, one row per example (``minilm`` only; default: embed them)."""
        items = builtins.list(examples)
        vecs = self._vectors(items, vectors)
        with self._write() as conn:
            self._insert(conn, items, vecs)
        return len(items)

    def replace(self, examples: Iterable[Example], *, keys: Sequence[str] | None = None) -> int:
        """Clear ``keys`` (``None``: the whole index) and add ``examples``, in one transaction:
        a reader sees the old examples or the new ones, never a half-built index. A whole
        rebuild clears :attr:`needs_rebuild`."""
        items = builtins.list(examples)
        vecs = self._vectors(items, None)
        with self._write() as conn:
            self._clear(conn, keys)
            self._insert(conn, items, vecs)
            if keys is None:
                conn.execute("UPDATE meta SET value = '0' WHERE name = 'needs_rebuild'")
        return len(items)

    @staticmethod
    def _insert(conn: sqlite3.Connection, items: Sequence[Example], vecs: np.ndarray | None) -> None:
        for i, ex in enumerate(items):
            old = conn.execute("SELECT n FROM examples WHERE id = ?", (ex.id,)).fetchone()
            if old is not None:
                for t, col in (("examples_fts", "rowid"), ("vectors", "n"), ("examples", "n")):
                    conn.execute(f"DELETE FROM {t} WHERE {col} = ?", (old[0],))
            cur = conn.execute(
                "INSERT INTO examples (id, key, query, digest, messages, value, text, source, created_at, "
                "episode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ex.id, ex.key, ex.query, ex.digest, _dumps(ex.messages), _dumps(ex.value), ex.text,
                 ex.source, float(ex.created_at), ex.episode),
            )  # fmt: skip
            n = cur.lastrowid
            conn.execute("INSERT INTO examples_fts (rowid, ktok, body) VALUES (?, ?, ?)",
                         (n, ktok(ex.key), fts_text(ex.query)))  # fmt: skip
            if vecs is not None:
                conn.execute(
                    "INSERT INTO vectors (n, key, vec) VALUES (?, ?, ?)", (n, ex.key, vecs[i].tobytes())
                )

    def delete(self, id: str) -> bool:
        """Remove one example; False when there was none with that id."""
        with self._write() as conn:
            old = conn.execute("SELECT n FROM examples WHERE id = ?", (id,)).fetchone()
            if old is None:
                return False
            for t, col in (("examples_fts", "rowid"), ("vectors", "n"), ("examples", "n")):
                conn.execute(f"DELETE FROM {t} WHERE {col} = ?", (old[0],))
        return True

    def delete_key(self, key: str) -> int:
        """Remove every example of a step key; returns how many."""
        with self._write() as conn:
            return self._clear(conn, [key])

    # -- reading ------------------------------------------------------------------------------

    def get(self, id: str) -> Example | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM examples WHERE id = ?", (id,)).fetchone()
        return None if row is None else _example(row)

    def match_ids(self, prefix: str, limit: int = 10) -> builtins.list[str]:
        """Example ids starting with ``prefix`` (short ids on the command line)."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM examples WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                                    (prefix, prefix + "\U0010ffff", limit)).fetchall()  # fmt: skip
        return [r[0] for r in rows]

    def memo(self, key: str, digest: str) -> Example | None:
        """The newest example of ``key`` whose input digest is exactly ``digest``."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM examples WHERE key = ? AND digest = ? ORDER BY created_at DESC, n DESC "
                "LIMIT 1",
                (key, digest),
            ).fetchone()
        return None if row is None else _example(row)

    def search(self, key: str, query: str, k: int = 3, *, exclude_ids: Iterable[str] = (),
               max_distance: float | None = None) -> builtins.list[Hit]:  # fmt: skip
        """The ``k`` examples of ``key`` closest to ``query``, closest first, none of
        ``exclude_ids`` and none farther than ``max_distance``."""
        if k <= 0:
            return []
        if self.embedder == "minilm":
            return self.search_vector(key, self.embed([query])[0], k, exclude_ids=exclude_ids,
                                      max_distance=max_distance)  # fmt: skip
        excluded = set(exclude_ids)
        with self._lock:
            bm25 = self._scorer(key)
            top = bm25.top(query, k, excluded)
            if max_distance is not None:
                top = [(i, s) for i, s in top if 1.0 / (1.0 + s) <= max_distance]
            if not top:
                return []
            found = [(int(bm25.ns[i]), s) for i, s in top]
            rows = self._fetch([n for n, _ in found])
        return [Hit(rows[n], s, 1.0 / (1.0 + s)) for n, s in found if n in rows]

    def _fetch(self, ns: Sequence[int]) -> dict[int, Example]:
        marks = ",".join("?" for _ in ns)
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM examples WHERE n IN ({marks})", list(ns))
        return {int(r["n"]): _example(r) for r in rows.fetchall()}

    def search_vector(self, key: str, vector: np.ndarray, k: int = 3, *, exclude_ids: Iterable[str] = (),
                      max_distance: float | None = None) -> builtins.list[Hit]:  # fmt: skip
        """:meth:`search` with an already embedded query (a unit vector; ``minilm`` only)."""
        if self.embedder != "minilm":
            raise ExampleIndexError("search_vector needs a minilm index")
        excluded = set(exclude_ids)
        with self._lock:
            ids, ns, mat = self._matrix(key)
            if not ids or k <= 0:
                return []
            n = len(ids)
            sims = np.dot(mat, np.asarray(vector, dtype=np.float32), out=self._sims[key])
            want = min(n, k + len(excluded))
            top = np.sort(largest(sims, want))
            top = top[np.argsort(-sims[top], kind="stable")]  # ties: the older first
            chosen = [int(i) for i in top if ids[int(i)] not in excluded][:k]
            if max_distance is not None:
                chosen = [i for i in chosen if 1.0 - float(sims[i]) <= max_distance]
            if not chosen:
                return []
            found = [(ns[i], float(sims[i])) for i in chosen]  # sims is reused: read it under the lock
            by_n = self._fetch([n for n, _ in found])
        return [Hit(by_n[n], s, 1.0 - s) for n, s in found if n in by_n]

    def _fresh(self) -> None:
        """Drop the in-memory caches when another connection committed since the last look."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._data_version:
            self._invalidate()
            self._data_version = version

    def _scorer(self, key: str) -> Bm25:
        """The key's BM25 postings, cached until this or another connection writes."""
        self._fresh()
        cached = self._bm25.get(key)
        if cached is None:
            rows = self._db.execute(
                "SELECT n, id, query FROM examples WHERE key = ? ORDER BY n", (key,)
            ).fetchall()
            vocab = self._vocab.setdefault(key, Vocabulary())
            cached = Bm25([r[1] for r in rows], [r[0] for r in rows], [r[2] for r in rows], vocab)
            self._bm25[key] = cached
        return cached

    def _matrix(self, key: str) -> tuple[builtins.list[str], builtins.list[int], np.ndarray]:
        """The key's ids and vectors, cached until this or another connection writes."""
        self._fresh()
        cached = self._cache.get(key)
        if cached is None:
            rows = self._db.execute(
                "SELECT e.id, v.n, v.vec FROM vectors v JOIN examples e ON e.n = v.n WHERE v.key = ? ORDER BY v.n",
                (key,),
            ).fetchall()
            mat = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), DIM)
            cached = ([r[0] for r in rows], [int(r[1]) for r in rows], mat)
            self._cache[key] = cached
            self._sims[key] = np.empty(len(rows), dtype=np.float32)
        return cached

    def stats(self) -> dict[str, Any]:
        """The embedder, schema, whether a rebuild is due, and the number of examples per key."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, COUNT(*) FROM examples GROUP BY key ORDER BY 2 DESC, 1"
            ).fetchall()
            meta = {r[0]: r[1] for r in self._db.execute("SELECT name, value FROM meta")}
        keys = {r[0]: int(r[1]) for r in rows}
        return {"path": str(self.path), "embedder": self.embedder, "embedder_version": meta.get("embedder_version"),
                "schema_version": int(meta.get("schema_version", 0)), "needs_rebuild": self.needs_rebuild,
                "total": sum(keys.values()), "keys": keys}  # fmt: skip

    def list(self, key: str | None = None, limit: int | None = 50) -> builtins.list[Example]:
        """Examples newest first, optionally of one key; ``limit=None``: all of them."""
        where, params = ("WHERE key = ?", [key]) if key is not None else ("", [])
        sql = f"SELECT {_COLUMNS} FROM examples {where} ORDER BY created_at DESC, n DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)  # type: ignore[arg-type]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_example(r) for r in rows]
