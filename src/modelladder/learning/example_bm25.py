"""The ``bm25`` embedder's search: Okapi BM25 over one step key's examples, in memory.

SQLite's FTS5 ``bm25()`` scores every row that matches any term of an OR query, which costs
~75 ms a lookup at 100k examples. This scores the same way from postings held in numpy
arrays: a lookup adds each query term's precomputed contributions into a dense ``float32``
array of the key's size and takes the top ``k`` with ``argpartition`` (well under 5 ms at 100k).

The formula is FTS5's (``fts5_aux.c``): ``k1 = 1.2``, ``b = 0.75``,
``idf = log((N - n + 0.5) / (n + 0.5))`` clamped to ``1e-6`` for a term in half the rows or
more, a row's length counting every token FTS5 stores for it (the body's plus the one key
token). The statistics (``N``, ``n``, the mean length) are the key's own, the corpus BM25
ranks within, where FTS5 uses the whole table's: with one key in the file the scores are
FTS5's to float32 precision; with several they differ a little. Ties rank the newest row
(highest ``n``) first, as the FTS5 query did.

FTS5 stays the persisted store; this is derived from the examples' text on the first search
of a key and dropped on any write (:class:`Vocabulary` keeps each text's term ids across
rebuilds, so a rebuild after a write tokenises only the new texts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from modelladder.learning.example_fts import fold, query_terms, tokens

__all__ = ["B", "K1", "MIN_IDF", "Bm25", "Vocabulary", "largest"]

K1 = 1.2
B = 0.75
MIN_IDF = 1e-6  # FTS5's floor for the idf of a term in half the rows or more
_ARGMAX_UP_TO = 16
_KEY_TOKENS = 1  # FTS5 counts the row's ``ktok`` column in its length


def largest(values: np.ndarray, want: int) -> np.ndarray:
    """The indices of the ``want`` largest of ``values``, in no particular order. For a few, as
    many ``argmax`` passes (microseconds each at 100k) beat ``argpartition`` (~0.6 ms); ``values``
    is written to meanwhile and restored."""
    n = len(values)
    if want >= n:
        return np.arange(n)
    if want > _ARGMAX_UP_TO:
        return np.argpartition(values, n - want)[n - want :]
    picked = np.empty(want, dtype=np.intp)
    saved = np.empty(want, dtype=values.dtype)
    for j in range(want):
        i = int(values.argmax())
        picked[j], saved[j] = i, values[i]
        values[i] = -np.inf
    values[picked] = saved
    return picked


class Vocabulary:
    """One key's term ids and the term ids of each text seen, kept across rebuilds."""

    def __init__(self) -> None:
        self.terms: dict[str, int] = {}
        self._docs: dict[str, np.ndarray] = {}

    def docs(self, texts: Iterable[str]) -> list[np.ndarray]:
        """The term ids of each text (its tokens in order); forgets texts not among ``texts``."""
        terms, old = self.terms, self._docs
        new: dict[str, np.ndarray] = {}
        out: list[np.ndarray] = []
        for text in texts:
            arr = new.get(text)
            if arr is None:
                arr = old.get(text)
                if arr is None:
                    toks = tokens(text)
                    arr = np.fromiter((terms.setdefault(t, len(terms)) for t in toks), np.int32, len(toks))
                new[text] = arr
            out.append(arr)
        self._docs = new
        return out

    def prune(self, live_terms: int) -> None:
        """Start afresh (the next rebuild tokenises every text again) when most term ids are
        of texts since deleted."""
        if len(self.terms) > 4 * live_terms + 10_000:
            self.terms, self._docs = {}, {}


class Bm25:
    """The BM25 postings of one key's examples, ``ids``/``ns`` in ascending ``n`` order."""

    def __init__(
        self, ids: Sequence[str], ns: Sequence[int], texts: Sequence[str], vocab: Vocabulary
    ) -> None:
        self.ids = list(ids)
        self.ns = np.asarray(ns, dtype=np.int64)
        self.vocab = vocab
        docs = vocab.docs(texts)
        n_docs, n_terms = len(docs), len(vocab.terms)
        self._terms = dict(vocab.terms)  # this snapshot's ids: later texts never shift them
        lengths = np.fromiter(map(len, docs), np.int64, n_docs)
        flat = np.concatenate(docs).astype(np.int64) if n_docs else np.zeros(0, np.int64)
        doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        pair, tf = np.unique(flat * max(n_docs, 1) + doc_of, return_counts=True)  # by term, then row
        term, row = np.divmod(pair, max(n_docs, 1))
        dl = (lengths + _KEY_TOKENS).astype(np.float64)
        avgdl = float(dl.mean()) if n_docs else 1.0
        norm = K1 * (1.0 - B + B * dl / avgdl)
        self._start = np.searchsorted(term, np.arange(n_terms + 1)).tolist()
        df = np.diff(np.asarray(self._start, dtype=np.float64))
        idf = np.log((n_docs - df + 0.5) / (df + 0.5))
        idf[idf <= 0.0] = MIN_IDF
        vocab.prune(int(np.count_nonzero(df)))
        tf64 = tf.astype(np.float64)
        self._contrib = (idf[term] * tf64 * (K1 + 1.0) / (tf64 + norm[row])).astype(np.float32)
        self._rows = row.astype(np.intp)
        self._score = np.zeros(n_docs, dtype=np.float32)  # reused by every lookup (under the index's lock)

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: str) -> np.ndarray | None:
        """Every row's BM25 score for ``query`` (0: no term matches); ``None`` when the query
        has no terms. The array is reused by the next call."""
        terms = query_terms(query)
        if not terms:
            return None
        score = self._score
        score.fill(0.0)
        for t in terms:
            tid = self._terms.get(t if t.isascii() else fold(t))
            if tid is None:
                continue
            a, b = self._start[tid], self._start[tid + 1]
            if a < b:
                score[self._rows[a:b]] += self._contrib[a:b]
        return score

    def top(self, query: str, k: int, excluded: set[str]) -> list[tuple[int, float]]:
        """The (row, score) of the ``k`` best matching rows not in ``excluded``, best first,
        ties newest first."""
        n = len(self.ids)
        score = self.scores(query) if n and k > 0 else None
        if score is None:
            return []
        want = min(n, k + len(excluded))
        threshold = float(score[largest(score, want)].min()) if want < n else 0.0  # the want-th best
        # every row at the threshold, so that a tie at the k-th place breaks by n as FTS5's did
        cand = np.flatnonzero(score >= threshold) if threshold > 0.0 else np.flatnonzero(score > 0.0)
        cs = score[cand]
        cand = cand[np.lexsort((-self.ns[cand], -cs))]
        out: list[tuple[int, float]] = []
        for i in cand.tolist():
            if self.ids[i] in excluded:
                continue
            out.append((i, float(score[i])))
            if len(out) == k:
                break
        return out
