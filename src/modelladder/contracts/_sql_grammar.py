"""The decoding grammar of :class:`~modelladder.contracts.sql.Sql`: a SQL subset in
llguidance's Lark dialect whose table and column terminals are one schema's own names.

Decoding only: what this grammar admits is a superset-in-spirit of what validation accepts
(it cannot see which columns belong to which table, or aliases), and validation (sqlglot)
decides. Keywords are upper case, which keeps them apart from lower-case aliases; names
that are not plain identifiers are written double-quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

__all__ = ["KINDS", "sql_grammar"]

KINDS = ("select", "insert", "update", "delete", "create")

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_COMMON = r"""
expr: {{and_expr| " OR " |4}}
and_expr: {{not_expr| " AND " |4}}
not_expr: "NOT " not_expr | predicate
predicate: sum (" "? COMPARE " "? sum | " IS " "NOT "? "NULL" | " " "NOT "? "IN (" {{value| "," " "? |8}} ")" | " " "NOT "? "LIKE " STRING | " " "NOT "? "BETWEEN " sum " AND " sum)?
sum: {{term| " "? ADDOP " "? |4}}
term: {{factor| " "? MULOP " "? |4}}
factor: value | column | func | "(" expr ")"
func: AGG "(" ("*" | "DISTINCT "? expr) ")" | FN "(" {{expr| "," " "? |3}} ")"
column: (qualifier ".")? COLUMN
qualifier: TABLE | ALIAS
value: NUMBER | STRING | "NULL" | "TRUE" | "FALSE"
COMPARE: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
ADDOP: "+" | "-"
MULOP: "*" | "/"
AGG: "COUNT" | "SUM" | "AVG" | "MIN" | "MAX"
FN: "LOWER" | "UPPER" | "LENGTH" | "ROUND" | "ABS" | "COALESCE"
NUMBER: /[0-9]{1,12}(\.[0-9]{1,6})?/
STRING: /'([^'\n]|''){0,200}'/
ALIAS: /[a-z][0-9]?/
OUTNAME: /[a-z][a-z0-9_]{0,23}/
"""

# Lists and chains are bounded ({{item|separator|n}}: at most n): unbounded repetition let
# SmolLM2 write "AND status = 1 AND status = 2 ..." or the same column forty times until its
# token budget ran out (measured on the demo's SQL step).
# Numbers are unsigned (no unary minus): "1 - -2" would read as "1 -" plus a SQL comment.
# Single spaces are part of the grammar, not ignored between tokens: an ignored-whitespace
# rule lets a small model emit whitespace until its token budget runs out (measured on
# SmolLM2 at an identifier it could not finish), and SQL needs one space where it needs any.
_SELECT = r"""
select: "SELECT " ("DISTINCT ")? items " FROM " source join? join? where? group? having? order? {limit}
items: "*" | {{item| "," " "? |8}}
item: expr (" AS " OUTNAME)?
source: TABLE (" " ("AS ")? ALIAS)?
join: " " ("INNER " | "LEFT " ("OUTER ")? | "CROSS ")? "JOIN " source (" ON " expr)?
where: " WHERE " expr
group: " GROUP BY " {{expr| "," " "? |3}}
having: " HAVING " expr
order: " ORDER BY " {{order_item| "," " "? |3}}
order_item: expr (" ASC" | " DESC")?
limit: " LIMIT " NUMBER
"""

_WRITES = {
    "insert": r"""
insert: "INSERT INTO " TABLE " (" {{COLUMN| "," " "? |12}} ") VALUES " {{row| "," " "? |5}}
row: "(" {{value| "," " "? |12}} ")"
""",
    "update": r"""
update: "UPDATE " TABLE " SET " {{assign| "," " "? |8}} (" WHERE " expr)?
assign: COLUMN " "? "=" " "? sum
""",
    "delete": r"""
delete: "DELETE FROM " TABLE (" WHERE " expr)?
""",
    "create": r"""
create: "CREATE TABLE " NEWNAME " (" {{coldef| "," " "? |16}} ")"
coldef: NEWNAME (" " SQLTYPE)?
NEWNAME: /[A-Za-z_][A-Za-z0-9_]{0,40}/
SQLTYPE: /(INTEGER|INT|TEXT|REAL|FLOAT|NUMERIC|BOOLEAN|DATE|DATETIME|VARCHAR(\([0-9]{1,4}\))?)/
""",
}


_BOUNDED = re.compile(r"\{\{(.+?)\|(.+?)\|(\d+)\}\}")


def _upto(item: str, sep: str, n: int) -> str:
    """``item`` repeated 1..n times with ``sep`` between, as nested optionals."""
    out = ""
    for _ in range(n - 1):
        out = f"({sep} {item}{(' ' + out) if out else ''})?"
    return f"{item} {out}".strip()


def _expand(text: str) -> str:
    return _BOUNDED.sub(lambda m: _upto(m.group(1).strip(), m.group(2).strip(), int(m.group(3))), text)


def _name(n: str) -> str:
    """A name as the grammar's string literal: bare when it is a plain identifier."""
    return json.dumps(n if _PLAIN.match(n) else '"' + n.replace('"', '""') + '"')


def _alternatives(names: Sequence[str]) -> str:
    # longest first: the lexer must not stop at a name that is a prefix of another one
    return " | ".join(_name(n) for n in sorted(set(names), key=lambda s: (-len(s), s)))


def sql_grammar(tables: Mapping[str, Sequence[str]], allow: Sequence[str], max_rows: int | None) -> str:
    """The Lark grammar text for statements of the ``allow`` kinds over ``tables``."""
    kinds = [k for k in KINDS if k in allow]
    # The statement is decoded inside a forced ```sql fence: conditioned on it, a small model's
    # first token is a keyword, not the first letter of the prose it wanted to write ("I..."
    # read as INSERT on every BFCL sql item with SmolLM2 before the fence). Validation reads
    # the statement with the fence stripped.
    parts = ['start: "```sql\\n" (' + " | ".join(kinds) + ') ";"? "\\n```"']
    if "select" in kinds:
        parts.append(_SELECT.replace("{limit}", "limit" if max_rows else "limit?"))
    parts += [_WRITES[k] for k in kinds if k != "select"]
    parts.append(_COMMON)
    columns = [c for cols in tables.values() for c in cols]
    parts.append(f"TABLE: {_alternatives(list(tables))}\nCOLUMN: {_alternatives(columns)}\n")
    return _expand("\n".join(parts))
