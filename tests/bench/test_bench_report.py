"""report.html: self-contained, and its plots really drawn by a browser (headless Chromium)."""

from __future__ import annotations

import re
import subprocess

import pytest

pytest.importorskip("bfcl_eval")

from modelladder.bench.bfcl.data import load_items  # noqa: E402
from modelladder.bench.report import nice_ticks, render_report  # noqa: E402
from modelladder.bench.runner import BenchConfig, run_bench  # noqa: E402
from tests.support.bench import (
    FLEET_TOML,  # noqa: E402
    bfcl_backend,  # noqa: E402
    chromium,  # noqa: E402
)

PLOTS = ("cost-quality", "latency", "escalations")


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    fleet = tmp / "fleet.toml"
    fleet.write_text(FLEET_TOML)
    cats = ["simple_python", "multiple", "irrelevance"]
    items = [it for c in cats for it in load_items(c, 10)]
    backends = {"tiny": bfcl_backend("tiny", items, 0.3), "small": bfcl_backend("small", items, 1.7)}
    cfg = BenchConfig(
        categories=cats, out_dir=tmp / "out", mode="ladder", limit=10, fleet_path=fleet,
        sweep_gate=True, record_traces=False, progress=False,
    )  # fmt: skip
    return run_bench(cfg, backends=backends)


def test_nice_ticks():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 2.3) == [0, 0.5, 1.0, 1.5, 2.0]
    assert nice_ticks(5, 5) == [5, 6, 7, 8, 9, 10]


def test_report_is_self_contained(sweep_run):
    page = (sweep_run.out_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", page, re.I)
    assert "@import" not in page and "url(" not in page
    for plot in PLOTS:
        assert f'data-plot="{plot}"' in page
    # the oracle is labelled wherever it appears
    assert "reference (oracle, not a model)" in page
    assert "Not a model" in page
    assert "AIQ" in page


def test_report_without_sweep_still_renders():
    summary = {
        "mode": "rung:tiny",
        "run": "r",
        "categories": {"simple_python": {"n": 1, "accuracy": 1.0, "cost_per_1k_steps_usd": 0.01}},
        "overall": {"n": 1, "accuracy": 1.0, "cost_per_1k_steps_usd": 0.01},
    }
    records = [{"category": "simple_python", "latency_s": 0.5, "escalations": [],
                "attempts": [{"rung": "tiny", "latency_s": 0.5}]}]  # fmt: skip
    page = render_report(summary, records)
    for plot in PLOTS:
        assert f'data-plot="{plot}"' in page
    assert "no escalations" in page


def test_report_plots_are_drawn_in_chromium(sweep_run, tmp_path):
    exe = chromium()
    if exe is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install -y chromium); cannot render report.html"
        )
    report = sweep_run.out_dir / "report.html"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1100,3000",
    ]  # fmt: skip
    dom = subprocess.run(
        [exe, *flags, "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    m = re.search(r'<body[^>]*data-plots-drawn="(\d+)"', html)
    assert m, "the page's load script did not run"
    assert int(m.group(1)) == len(PLOTS)
    drawn = dict(re.findall(r'data-plot="([\w-]+)"[^>]*data-drawn="(\d+)"', html))
    assert set(drawn) == set(PLOTS), drawn
    # cost-quality: 3 single rungs + many threshold points + hull; latency: 3 rungs + the per-item row
    assert int(drawn["cost-quality"]) > 20
    assert int(drawn["latency"]) >= 8  # box + median per row (a constant latency has no whisker)
    assert int(drawn["escalations"]) >= 2

    shot = tmp_path / "report.png"
    run = subprocess.run(
        [exe, *flags, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120
    )
    assert run.returncode == 0 and shot.stat().st_size > 20_000
    try:
        from PIL import Image
    except ImportError:
        return
    img = Image.open(shot).convert("RGB")
    colours = img.getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50  # plots, not a blank page
