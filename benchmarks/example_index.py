"""Example-index lookup latency at scale: what retrieving demonstrations adds to an edge step.

Builds an index of ``--n`` synthetic step queries (agent-like text: a request with names,
places and ids, then a tool call rendered as ``name(k=v)``) in one step key, then times
``--queries`` lookups of new queries from the same generator, k nearest each:

* ``bm25``: ``ExampleIndex.search`` end to end (the in-memory BM25 scorer over the key's
  postings plus fetching the hits). The first lookup tokenises the key's examples and builds
  the postings, and is reported on its own line.
* ``minilm``: the stored examples get random unit vectors (lookup cost does not depend on what
  the vectors mean, and embedding 100k texts would take the better part of an hour on 2 cores);
  only the queries are embedded, and the query embedding time is reported apart from the lookup
  (a dot product over the key's cached matrix plus fetching the hits). The first lookup loads
  the key's matrix from SQLite and is reported on its own line.

Also reported: build time, file size, the time to open the index (it runs SQLite's
``quick_check``) and the exact-match memo lookup. p50/p99 in milliseconds.

    .venv/bin/python benchmarks/example_index.py                 # 100k examples, both embedders
    .venv/bin/python benchmarks/example_index.py --n 2000 --embedder bm25
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelladder._progress import progress_bar
from modelladder.learning.example_index import Example, ExampleIndex
from modelladder.learning.example_query import input_digest, step_query

KEY = "route"
TOOLS = ["get_weather", "send_email", "lookup_order", "create_ticket", "book_table", "cancel_booking",
         "search_flights", "convert_currency", "get_stock_price", "translate_text", "set_reminder",
         "refund_payment", "update_address", "list_invoices", "track_parcel", "schedule_meeting"]  # fmt: skip
TEMPLATES = [
    "What is the {a} for {e} in {p}? I need it before {d}.",
    "Please {v} the {a} of order {i} for {e}, it was sent to {p}.",
    "Can you {v} {e} about the {a} in {p} on {d}?",
    "My {a} from {p} never arrived, order {i}; {e} said to ask you.",
    "{v} a {a} with {e} next {d} near {p}, reference {i}.",
]
VERBS = ["check", "update", "cancel", "send", "book", "find", "track", "refund", "move", "confirm"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "tomorrow"]


def _words(rng: random.Random, n: int) -> list[str]:
    syll = ["ka", "lo", "mi", "ra", "ten", "bo", "su", "vi", "del", "nor", "ga", "pe", "qui", "sha", "tor"]
    return sorted({"".join(rng.choice(syll) for _ in range(rng.randint(2, 3))) for _ in range(n)})


class Texts:
    """Agent-like step queries with a Zipf-ish vocabulary, so BM25 sees common and rare terms."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.entities, self.places, self.attrs = (
            _words(self.rng, 4000),
            _words(self.rng, 800),
            _words(self.rng, 300),
        )

    def _pick(self, words: list[str]) -> str:
        # log-uniform rank: P(rank r) ~ 1/r, Zipf's law with exponent 1, as words of real text
        return words[min(int(math.exp(self.rng.random() * math.log(len(words) + 1))) - 1, len(words) - 1)]

    def one(self) -> str:
        r = self.rng
        e, p, a, i = (
            self._pick(self.entities),
            self._pick(self.places),
            self._pick(self.attrs),
            f"A-{r.randint(1, 99999)}",
        )
        text = r.choice(TEMPLATES).format(
            a=a, e=e.title(), p=p.title(), d=r.choice(DAYS), v=r.choice(VERBS), i=i
        )
        tool = r.choice(TOOLS)
        return f"{text} {tool}(name={e.title()}, ref={i})" if r.random() < 0.5 else text


def _example(i: int, text: str) -> Example:
    msgs = [{"role": "user", "content": text}]
    return Example(id=f"run-{i:07d}", key=KEY, query=step_query(msgs), digest=input_digest(msgs), messages=msgs,
                   value=[{"name": "get_weather", "arguments": {"city": "x"}}],
                   text='<tool_call>[{"name": "get_weather", "arguments": {"city": "x"}}]</tool_call>',
                   source="checker", created_at=float(i))  # fmt: skip


def _ms(samples: list[float]) -> dict[str, float]:
    xs = sorted(samples)
    q = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))] * 1000  # noqa: E731
    return {
        "p50_ms": round(q(0.50), 3),
        "p99_ms": round(q(0.99), 3),
        "mean_ms": round(statistics.fmean(xs) * 1000, 3),
    }


def build(
    path: Path, embedder: str, n: int, texts: Texts, batch: int, rng: np.random.Generator
) -> dict[str, Any]:
    t0 = time.perf_counter()
    with ExampleIndex(path, embedder=embedder) as idx, progress_bar() as bar:
        task = bar.add_task(f"build {embedder}", total=n)
        for start in range(0, n, batch):
            items = [_example(i, texts.one()) for i in range(start, min(n, start + batch))]
            vectors = None
            if embedder == "minilm":
                vectors = rng.standard_normal((len(items), 384)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            idx.add_many(items, vectors=vectors)
            bar.advance(task, len(items))
    return {"build_s": round(time.perf_counter() - t0, 2), "file_mb": round(path.stat().st_size / 2**20, 1)}


def measure(path: Path, embedder: str, queries: list[str], k: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    idx = ExampleIndex(path, embedder=embedder)
    out: dict[str, Any] = {"open_ms": round((time.perf_counter() - t0) * 1000, 1)}
    lookups, embeds, memos = [], [], []
    with idx:
        if embedder == "minilm":
            idx.embed(["warm up the model"])  # the model load is once per process, not per step
            first = idx.embed(["first"])[0]
            t = time.perf_counter()
            idx.search_vector(KEY, first, k)
            out["first_lookup_ms"] = round((time.perf_counter() - t) * 1000, 1)
        else:
            t = time.perf_counter()
            idx.search(KEY, "warm up", k)
            out["first_lookup_ms"] = round((time.perf_counter() - t) * 1000, 1)
        with progress_bar() as bar:
            task = bar.add_task(f"query {embedder}", total=len(queries))
            for q in queries:
                if embedder == "minilm":
                    t = time.perf_counter()
                    vec = idx.embed([q])[0]
                    embeds.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    hits = idx.search_vector(KEY, vec, k)
                else:
                    t = time.perf_counter()
                    hits = idx.search(KEY, q, k)
                lookups.append(time.perf_counter() - t)
                assert len(hits) <= k
                t = time.perf_counter()
                idx.memo(KEY, input_digest([{"role": "user", "content": q}]))
                memos.append(time.perf_counter() - t)
                bar.advance(task)
    out["lookup"] = _ms(lookups)
    if embeds:
        out["query_embedding"] = _ms(embeds)
    out["memo"] = _ms(memos)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="examples in the index (one step key)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--embedder", choices=["both", "bm25", "minilm"], default="both")
    ap.add_argument("--batch", type=int, default=2000, help="examples per add_many transaction")
    ap.add_argument("--dir", type=Path, default=None, help="where the index files go (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    embedders = ["bm25", "minilm"] if args.embedder == "both" else [args.embedder]
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="example-index-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "n": args.n, "queries": args.queries, "k": args.k, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": sys.version.split()[0],
    }  # fmt: skip
    for emb in embedders:
        texts = Texts(args.seed)
        path = workdir / f"examples-{emb}-{args.n}.sqlite"
        for p in workdir.glob(f"{path.name}*"):
            p.unlink()
        res = build(path, emb, args.n, texts, args.batch, np.random.default_rng(args.seed))
        queries = [texts.one() for _ in range(args.queries)]  # new text, same distribution
        res.update(measure(path, emb, queries, args.k))
        results[emb] = res
        line = (f"{emb}: {args.n} examples, built in {res['build_s']} s ({res['file_mb']} MB), open "
                f"{res['open_ms']} ms; lookup p50 {res['lookup']['p50_ms']} ms, p99 {res['lookup']['p99_ms']} ms")  # fmt: skip
        if "query_embedding" in res:
            line += (f"; query embedding p50 {res['query_embedding']['p50_ms']} ms, p99 "
                     f"{res['query_embedding']['p99_ms']} ms")  # fmt: skip
        line += f"; first lookup {res['first_lookup_ms']} ms"
        line += f"; memo p50 {res['memo']['p50_ms']} ms, p99 {res['memo']['p99_ms']} ms"
        print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
