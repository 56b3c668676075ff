"""benchmarks/gate_proof.py on a synthetic ``bench bfcl`` results file with a known error
curve: calibrated on one half by id hash, reported on the other, over 20 splits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gate_proof.py"


def _results(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        mean = float(rng.uniform(-2.0, 0.0))
        wrong = rng.uniform() < max(0.0, (-mean - 0.5) / 1.5)  # right whenever mean > -0.5
        attempt = {"rung": "edge", "placement": "edge", "ok": True, "finish_reason": "stop", "error": None,
                   "mean_logprob": mean, "min_logprob": mean - float(rng.uniform(0, 1)), "n_value_tokens": 4,
                   "completion_tokens": 20, "signals": {}}  # fmt: skip
        lines.append({"id": f"simple_python_{i}", "category": "simple_python", "rung": "edge",
                      "calls": [{"name": "f", "arguments": {}}], "ast_valid": not wrong,
                      "attempts": [attempt]})  # fmt: skip
    path.mkdir()
    (path / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_proof_keeps_the_bound_over_20_splits(tmp_path: Path) -> None:
    _results(tmp_path / "run", 2400, 15)
    out = tmp_path / "proof.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path / "run"), "--rung", "edge",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    res = json.loads(out.read_text())
    assert res["splits"] == 20 and res["certified_splits"] >= 15
    assert res["share_within_alpha"] >= 0.95 and res["goal_within_alpha_met"]
    assert 0.1 < res["mean_edge_share"] < 0.5  # the truly safe region is the top 25 %
    assert res["mean_logprob_gate_edge_share"] is not None
    assert "goal met" in done.stdout


def test_proof_refuses_bad_input(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path), "--alpha", "1.5"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "within (0, 1)" in bad.stderr
    missing = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path / "nope")],
                             capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 2 and "no results.jsonl" in missing.stderr
