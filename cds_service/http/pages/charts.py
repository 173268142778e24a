"""Charts as inline SVG, drawn on the server: no script, no library, no outside request.

Every text that reaches the markup is escaped. Colours come from CSS classes (`series-N`,
`outcome-*`) in the page's stylesheet, so that the Content-Security-Policy can forbid inline
styles. Each mark carries a <title> (the browser shows it on hover) and each chart an
aria-label; the dashboard prints the numbers beside every chart as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

_WIDTH = 760
_ROW_HEIGHT = 26
_NOTE_WIDTH = 210


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]
    css_class: str  # its colour, shared with the legend


@dataclass(frozen=True)
class Segment:
    css_class: str
    value: float
    tooltip: str


@dataclass(frozen=True)
class Bar:
    label: str
    segments: Sequence[Segment]
    note: str = ""


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def nice_step(maximum: float, ticks: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks` grid lines."""
    if maximum <= 0:
        return 1.0
    rough = maximum / ticks
    power = 10 ** math.floor(math.log10(rough))
    for multiple in (1, 2, 5, 10):
        if multiple * power >= rough:
            return float(multiple * power)
    return float(10 * power)


def _svg(height: int, label: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def stacked_columns(label: str, periods: Sequence[str], series: Sequence[Series]) -> Markup:
    """One column per period, stacked by series (e.g. cards per topic per day)."""
    height, left, right, top, bottom = 280, 48, 12, 12, 48
    plot_width, plot_height = _WIDTH - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(periods))]
    step = nice_step(max(totals, default=0))
    ceiling = step * max(1, math.ceil(max(totals, default=0) / step))
    body = []
    tick = 0.0
    while tick <= ceiling + 1e-9:
        y = top + plot_height - plot_height * tick / ceiling
        body.append(
            f'<line class="grid" x1="{left}" x2="{_WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(tick)}</text>"
        )
        tick += step
    count = max(1, len(periods))
    slot = plot_width / count
    column = max(1.0, slot * 0.8)
    every = max(1, math.ceil(count / 12))  # at most about 12 period labels
    for index, period in enumerate(periods):
        x = left + slot * index + (slot - column) / 2
        base = float(top + plot_height)
        for one in series:
            value = one.values[index]
            if not value:
                continue
            bar_height = plot_height * value / ceiling
            base -= bar_height
            body.append(
                f'<rect class="{escape(one.css_class)}" x="{x:.1f}" y="{base:.1f}" '
                f'width="{column:.1f}" height="{bar_height:.1f}">'
                f"<title>{escape(period)}: {escape(one.name)}, {value}</title></rect>"
            )
        if index % every == 0:
            body.append(
                f'<text class="axis" x="{x + column / 2:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle">{escape(period)}</text>'
            )
    body.append(
        f'<line class="axis-line" x1="{left}" x2="{_WIDTH - right}" '
        f'y1="{top + plot_height}" y2="{top + plot_height}"/>'
    )
    return _svg(height, label, body)


def horizontal_bars(
    label: str,
    bars: Sequence[Bar],
    *,
    maximum: float | None = None,
    marker: float | None = None,
    label_width: int = 230,
) -> Markup:
    """One row per bar, its segments side by side (stacked) from the left, its note after it.

    `maximum` sets the scale (default: the longest bar); `marker` draws a vertical line at
    that value (e.g. a time budget). Labels longer than `label_width` are shortened (the
    full text shows on hover).
    """
    top, bottom = 8, 24 if marker is not None else 8
    height = top + bottom + _ROW_HEIGHT * max(1, len(bars))
    plot_left, plot_width = label_width, _WIDTH - label_width - _NOTE_WIDTH
    characters = label_width // 7
    longest = max((sum(s.value for s in bar.segments) for bar in bars), default=0.0)
    scale_end = maximum or longest or 1.0
    if marker is not None:
        scale_end = max(scale_end, marker * 1.1)
    body = []
    for row, bar in enumerate(bars):
        y = top + row * _ROW_HEIGHT
        body.append(
            f'<text class="label" x="{plot_left - 8}" y="{y + 17}" text-anchor="end">'
            f"{escape(_shorten(bar.label, characters))}<title>{escape(bar.label)}</title></text>"
        )
        x = float(plot_left)
        for segment in bar.segments:
            width = plot_width * segment.value / scale_end if scale_end else 0.0
            if width <= 0:
                continue
            body.append(
                f'<rect class="{escape(segment.css_class)}" x="{x:.1f}" y="{y + 4}" '
                f'width="{width:.1f}" height="{_ROW_HEIGHT - 8}">'
                f"<title>{escape(segment.tooltip)}</title></rect>"
            )
            x += width
        if bar.note:
            body.append(
                f'<text class="note" x="{x + 6:.1f}" y="{y + 17}">{escape(bar.note)}</text>'
            )
    if marker is not None:
        x = plot_left + plot_width * marker / scale_end
        body.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
            f'y2="{height - bottom + 4}"/>'
            f'<text class="axis" x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
            f"{escape(_number(marker))}</text>"
        )
    return _svg(height, label, body)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
