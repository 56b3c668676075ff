"""SVG building blocks of the report: a data-to-pixel :class:`Frame` with its axes, round
tick values, the ``<svg>`` wrapper every plot uses, the palette, and the number formats
shared by plots and tables.

Hand-written SVG instead of matplotlib: the plots are simple (points, lines, boxes, bars),
the page must open offline, and the package should not grow a plotting dependency. Every
drawn mark carries ``data-mark`` and every plot ``data-plot``, which the page's script and
the headless-Chromium test read to check the plots are really drawn.
"""

from __future__ import annotations

import html
import math
from typing import Any

__all__ = ["H", "PALETTE", "W", "Frame", "empty", "esc", "nice_ticks", "num", "pct", "svg", "usd"]

W, H = 720, 420
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def pct(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v * 100:.{digits}f}%"


def num(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def usd(v: float | None) -> str:
    if v is None:
        return "-"
    return f"${v:.4f}" if v < 1 else f"${v:,.2f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 12))
        t += step
    return ticks


class Frame:
    """Data-to-pixel mapping and axes for one plot (linear, or log10 on x)."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        *,
        x_log: bool = False,
        width: int = W,
        height: int = H,
        margin: tuple[int, int, int, int] = (70, 20, 20, 50),  # left, right, top, bottom
    ):
        self.x_log = x_log
        lo, hi = x_range
        if x_log:
            lo, hi = math.log10(max(lo, 1e-12)), math.log10(max(hi, 1e-12))
        if hi <= lo:
            hi = lo + 1.0
        self.xlo, self.xhi = lo, hi
        self.ylo, self.yhi = y_range if y_range[1] > y_range[0] else (y_range[0], y_range[0] + 1.0)
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = margin

    def x(self, v: float) -> float:
        t = math.log10(max(v, 1e-12)) if self.x_log else v
        return self.left + (t - self.xlo) / (self.xhi - self.xlo) * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        return (
            self.height
            - self.bottom
            - (v - self.ylo) / (self.yhi - self.ylo) * (self.height - self.top - self.bottom)
        )

    def axes(self, x_label: str, y_label: str, y_fmt: Any = None, x_fmt: Any = None) -> str:
        parts = []
        x0, x1 = self.left, self.width - self.right
        y0, y1 = self.height - self.bottom, self.top
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>')
        for t in nice_ticks(self.ylo, self.yhi):
            py = self.y(t)
            label = y_fmt(t) if y_fmt else f"{t:g}"
            parts.append(f'<line x1="{x0}" y1="{py:.1f}" x2="{x1}" y2="{py:.1f}" class="grid"/>')
            parts.append(
                f'<text x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end" class="tick">{esc(label)}</text>'
            )
        if self.x_log:
            xticks = [
                m * 10**e
                for e in range(math.floor(self.xlo), math.ceil(self.xhi) + 1)
                for m in (1, 3)
                if self.xlo - 1e-9 <= math.log10(m * 10**e) <= self.xhi + 1e-9
            ]
        else:
            xticks = nice_ticks(self.xlo, self.xhi)
        for t in xticks:
            px = self.x(t)
            label = x_fmt(t) if x_fmt else f"{t:g}"
            parts.append(f'<line x1="{px:.1f}" y1="{y0}" x2="{px:.1f}" y2="{y0 + 5}" class="axis"/>')
            parts.append(
                f'<text x="{px:.1f}" y="{y0 + 18}" text-anchor="middle" class="tick">{esc(label)}</text>'
            )
        parts.append(
            f'<text x="{(x0 + x1) / 2:.1f}" y="{self.height - 10}" text-anchor="middle" class="label">{esc(x_label)}</text>'
        )
        parts.append(
            f'<text x="16" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" class="label" '
            f'transform="rotate(-90 16 {(y0 + y1) / 2:.1f})">{esc(y_label)}</text>'
        )
        return "\n".join(parts)


def svg(plot: str, title: str, body: str, width: int = W, height: int = H) -> str:
    return (
        f'<svg class="plot" data-plot="{esc(plot)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{esc(title)}">\n'
        f"<title>{esc(title)}</title>\n{body}\n</svg>"
    )


def empty(plot: str, title: str, message: str) -> str:
    body = (
        f'<text x="{W / 2}" y="40" text-anchor="middle" class="label" data-mark="empty">{esc(message)}</text>'
    )
    return svg(plot, title, body, height=70)
