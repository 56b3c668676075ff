"""The Berkeley Function Calling Leaderboard (BFCL v4) pieces of the benchmark: its items
(:mod:`.data`), their schema conversion (:mod:`.schema`), BFCL's AST checker (:mod:`.score`),
the step an item runs as (:mod:`.step`) and the ``reference`` oracle rung (:mod:`.reference`).

Nothing is imported here: :mod:`.score` needs the ``bench`` extra (``bfcl-eval``), and
importing the package must not require it.
"""

__all__: list[str] = []
