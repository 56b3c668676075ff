"""The benchmark's HTML report, split by job: figure data (:mod:`.data`), SVG building blocks
(:mod:`.svg`), plots (:mod:`.plots`), tables (:mod:`.tables`) and the page (:mod:`.page`)
with its stylesheet and script as package files."""

from modelladder.bench.report.data import cost_quality_points, latency_samples
from modelladder.bench.report.page import render_report, write_report
from modelladder.bench.report.svg import nice_ticks

__all__ = ["cost_quality_points", "latency_samples", "nice_ticks", "render_report", "write_report"]
