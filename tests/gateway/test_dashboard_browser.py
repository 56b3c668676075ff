"""The dashboard in headless Chromium: a real gateway with two keys, a real store filled by
the real Ladder, the page's own script fetching the JSON API and drawing SVG.

Chromium driven from the command line (``--dump-dom``, ``--screenshot``) cannot fill in the
login form, so the pages whose numbers are checked come from ``modelladder ui``'s app over the
same store (loopback, no keys: every tenant's runs), and the keyed gateway is checked to send a
keyless browser to the login form. The login cookie itself is tested over HTTP in
test_dashboard_api.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelladder.gateway.server import BackgroundServer
from modelladder.gateway.ui import dashboard_app
from modelladder.traces import TraceStore
from tests.support.bench import chromium
from tests.support.dashboard import (
    KEY_A,
    KEY_B,
    backends,
    dump_dom,
    priced_fleet,
    record_history,
    screenshot,
    send_traffic,
)  # fmt: skip
from tests.support.gateway import gateway

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def exe() -> str:
    found = chromium()
    if found is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); cannot render /ui")
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dash-browser")
    with (
        TraceStore(tmp / "traces.sqlite") as store,
        gateway(priced_fleet(), store, backends(), api_keys=(KEY_A, KEY_B)) as gw,
    ):
        traffic = send_traffic(gw.base_url)
        record_history(store)  # step "triage": 96 runs over 24 hours
        with BackgroundServer(dashboard_app(store)) as ui:
            yield {"gw": gw.base_url, "ui": ui.base_url, "traffic": traffic, "tmp": tmp}


def _figure(html: str, row: str, figure: str) -> str:
    m = re.search(rf'<tr data-step="{row}">(.*?)</tr>', html, re.S)
    assert m, f"no row for step {row}"
    cell = re.search(rf'data-figure="{figure}"[^>]*>([^<]*)<', m.group(1))
    assert cell, f"no {figure} in the {row} row"
    return cell.group(1)


def test_steps_page_shows_the_numbers(exe: str, env: dict[str, Any], tmp_path: Path) -> None:
    html = dump_dom(exe, env["ui"] + "/ui", tmp_path / "p1")
    assert 'data-rendered="steps"' in html, html[-2000:]
    # modelladder ui shows every tenant: A's 9 extract runs and B's 3
    assert _figure(html, "extract", "runs") == "12"
    assert _figure(html, "extract", "edge-share") == "75.0%"  # 6 of A's + 3 of B's on the edge
    assert _figure(html, "extract", "accepted-wrong") == "75.0% (3/4)"
    assert _figure(html, "extract", "escalations") == "contract:parse_error 7, backend:timeout 2"
    assert _figure(html, "chat", "runs") == "2"
    assert _figure(html, "chat", "accepted-wrong") == "no labels"
    # no fleet here: the frontier is the priciest cloud rung seen, at its recorded costs
    assert re.search(r'data-figure="frontier" title="on big: 3 measured, 9 imputed"', html), html


def test_step_page_draws_its_charts(exe: str, env: dict[str, Any], tmp_path: Path) -> None:
    html = dump_dom(exe, env["ui"] + "/ui/steps/extract", tmp_path / "p2")
    assert 'data-rendered="step"' in html and 'data-charts-drawn="2"' in html, html[-3000:]
    drawn = dict(re.findall(r'data-chart="([\w-]+)"[^>]*data-drawn="(\d+)"', html))
    assert int(drawn["escalations"]) == 2  # one bar per reason
    assert int(drawn["edge-share"]) >= 2  # a runs bar and an edge bar at least
    assert re.search(r'data-reason-count="contract:parse_error"[^>]*>7<', html)
    assert re.search(r'data-figure="edge-share"[^>]*>75.0%<', html)
    screenshot(exe, env["ui"] + "/ui/steps/extract", tmp_path / "step.png", tmp_path / "p3")
    _looks_drawn(tmp_path / "step.png")


def test_edge_share_over_time(exe: str, env: dict[str, Any], tmp_path: Path) -> None:
    """24 hourly buckets of 4 runs; 3, 2, 1 then 0 of them escalate to big, six hours each."""
    html = dump_dom(exe, env["ui"] + "/ui/steps/triage", tmp_path / "p7")
    assert 'data-rendered="step"' in html, html[-2000:]
    assert re.search(r'data-figure="runs"[^>]*>96<', html)
    assert re.search(r'data-figure="edge-share"[^>]*>62.5%<', html)  # 60 of 96 on the edge
    drawn = dict(re.findall(r'data-chart="([\w-]+)"[^>]*data-drawn="(\d+)"', html))
    # a runs bar per bucket, an edge bar where some ran on the edge, a share dot per bucket
    assert int(drawn["edge-share"]) >= 3 * 24, drawn  # hourly buckets (25: the runs straddle hours)
    shot = screenshot(
        exe, env["ui"] + "/ui/steps/triage", tmp_path / "triage.png", tmp_path / "p8", "1280,1500"
    )
    _looks_drawn(shot)
    print(f"screenshot: {shot}")


def test_run_page_puts_attempts_side_by_side(exe: str, env: dict[str, Any], tmp_path: Path) -> None:
    run_id = env["traffic"].by_kind[KEY_A, "big"][0]
    html = dump_dom(exe, env["ui"] + f"/ui/runs/{run_id}", tmp_path / "p4")
    assert 'data-rendered="run"' in html, html[-2000:]
    cards = re.findall(
        r'<section class="attempt( accepted)?" data-attempt="(\d)">(.*?)</section>', html, re.S
    )
    assert [(c[0], c[1]) for c in cards] == [("", "0"), ("", "1"), (" accepted", "2")]
    assert "<h3>#0 tiny</h3>" in cards[0][2] and "<h3>#2 big</h3>" in cards[2][2]
    assert 'data-field="escalation">contract:parse_error<' in cards[0][2]
    assert 'data-field="placement">cloud<' in cards[2][2]
    assert 'data-field="text">nope<' in cards[0][2]
    screenshot(exe, env["ui"] + f"/ui/runs/{run_id}", tmp_path / "run.png", tmp_path / "p5", "1280,1100")
    _looks_drawn(tmp_path / "run.png")


def test_keyed_gateway_sends_a_browser_to_the_login_form(
    exe: str, env: dict[str, Any], tmp_path: Path
) -> None:
    html = dump_dom(exe, env["gw"] + "/ui", tmp_path / "p6")
    assert 'action="/ui/login"' in html and "data-rendered" not in html
    assert "tenant-b-secret-prompt" not in html


def _looks_drawn(shot: Path) -> None:
    assert shot.stat().st_size > 20_000
    try:
        from PIL import Image
    except ImportError:
        return
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50  # text and charts, not a blank page
