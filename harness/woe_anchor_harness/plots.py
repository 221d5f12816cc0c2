"""Inline SVG charts for the model report: no scripts, no fonts or files fetched.

Every text that reaches the markup goes through ``esc``: band values and
model keys are user data, shown as the terminal shows them (``text.shown``), then HTML-escaped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from .text import shown

POSITIVE = "#c0392b"   # raises the odds of slow21
NEGATIVE = "#2471a3"   # lowers them
NEUTRAL = "#7f8c8d"
FOLD_DOT = "#f39c12"
GRID = "#e5e7eb"


def esc(value) -> str:
    return escape(shown(value), quote=True)


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


@dataclass(frozen=True)
class Scale:
    """A linear map from data [lo, hi] to pixels [a, b]."""
    lo: float
    hi: float
    a: float
    b: float

    def __call__(self, x: float) -> float:
        span = self.hi - self.lo or 1.0
        return self.a + (x - self.lo) / span * (self.b - self.a)


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round numbers spanning [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def tick_text(v: float, values: list[float]) -> str:
    """A tick label with as many decimals as the tick step needs."""
    step = min((b - a for a, b in zip(values, values[1:])), default=1.0) or 1.0
    return f"{v:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}"


def svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
            f"<title>{esc(title)}</title>{''.join(body)}</svg>")


def text(x: float, y: float, s, anchor: str = "start", size: int = 12, fill: str = "#111", weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'font-weight="{weight}" fill="{fill}">{esc(s)}</text>')


def line(x1, y1, x2, y2, stroke=GRID, width=1.0, dash: str | None = None) -> str:
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{stroke}" stroke-width="{width}"{extra}/>')


def rect(x, y, w, h, fill, title: str | None = None) -> str:
    tip = f"<title>{esc(title)}</title>" if title else ""
    x, w = (x + w, -w) if w < 0 else (x, w)
    y, h = (y + h, -h) if h < 0 else (y, h)
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}">{tip}</rect>'


def circle(cx, cy, r, fill, title: str | None = None, opacity: float = 1.0) -> str:
    tip = f"<title>{esc(title)}</title>" if title else ""
    return (f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{fill}" '
            f'fill-opacity="{opacity}">{tip}</circle>')


def x_axis(scale: Scale, y: float, top: float, values: list[float], label: str) -> list[str]:
    out = [line(scale.a, y, scale.b, y, stroke="#444")]
    for v in values:
        out += [line(scale(v), top, scale(v), y), text(scale(v), y + 15, tick_text(v, values), "middle", 11)]
    out.append(text((scale.a + scale.b) / 2, y + 32, label, "middle", 12))
    return out


def y_axis(scale: Scale, x: float, right: float, values: list[float], label: str) -> list[str]:
    out = [line(x, scale.a, x, scale.b, stroke="#444")]
    for v in values:
        out += [line(x, scale(v), right, scale(v)), text(x - 6, scale(v) + 4, tick_text(v, values), "end", 11)]
    mid = (scale.a + scale.b) / 2
    out.append(f'<text x="{x - 44:.1f}" y="{mid:.1f}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 {x - 44:.1f} {mid:.1f})">{esc(label)}</text>')
    return out


def metric_bars(items: list[tuple[str, float | None]], title: str, lo: float = 0.5, hi: float = 1.0,
                colors: tuple[str, ...] = (POSITIVE, NEGATIVE, NEUTRAL)) -> str:
    """Horizontal bars of a few figures on [lo, hi] (AUCs, fold spreads)."""
    width, left, row = 560, 130, 30
    height = 50 + row * len(items)
    x = Scale(lo, hi, left, width - 70)
    body = x_axis(x, height - 36, 10, ticks(lo, hi, 5), title)
    for i, (name, value) in enumerate(items):
        y = 14 + i * row
        body.append(text(left - 8, y + 14, name, "end"))
        if value is None:
            body.append(text(left + 6, y + 14, "n/a", fill=NEUTRAL))
            continue
        end = x(max(lo, min(hi, value)))
        body.append(rect(x.a, y, end - x.a, 18, colors[i % len(colors)], f"{name}: {value:.4f}"))
        body.append(text(end + 6, y + 14, f"{value:.4f}"))
    return svg(width, height, body, title)


def calibration(curves: list[tuple[str, str, list[tuple[float, float, int]]]], title: str) -> str:
    """Observed rate against mean predicted p per score bin; dot area grows with the bin's rows."""
    size, pad = 420, 56
    x, y = Scale(0, 1, pad, size - 16), Scale(0, 1, size - pad, 16)
    body = x_axis(x, size - pad, 16, ticks(0, 1, 5), "mean predicted p(slow21) in the bin")
    body += y_axis(y, pad, size - 16, ticks(0, 1, 5), "observed slow21 rate")
    body.append(line(x(0), y(0), x(1), y(1), stroke=NEUTRAL, dash="4 3"))
    biggest = max((n for _, _, pts in curves for _, _, n in pts), default=1)
    for k, (name, color, points) in enumerate(curves):
        for p_mean, rate, n in points:
            body.append(circle(x(p_mean), y(rate), 2.5 + 9 * math.sqrt(n / biggest), color,
                               f"{name}: mean p {p_mean:.3f}, observed {rate:.3f}, {n} rows", 0.75))
        body.append(circle(pad + 20, 26 + 18 * k, 5, color))
        body.append(text(pad + 30, 30 + 18 * k, name))
    return svg(size, size, body, title)


def histogram(edges: list[float], stacks: list[tuple[str, str, list[int]]], title: str, x_label: str) -> str:
    """Stacked bars per bin (e.g. slow21 rows over the others)."""
    width, height, left, bottom = 640, 300, 64, 52
    totals = [sum(s[2][i] for s in stacks) for i in range(len(edges) - 1)]
    x = Scale(edges[0], edges[-1], left, width - 16)
    y = Scale(0, max(totals, default=1) or 1, height - bottom, 16)
    body = x_axis(x, height - bottom, 16, ticks(edges[0], edges[-1], 8), x_label)
    body += y_axis(y, left, width - 16, ticks(0, y.hi, 4), "rows")
    for i in range(len(edges) - 1):
        base = 0
        for name, color, counts in stacks:
            n = counts[i]
            if n:
                body.append(rect(x(edges[i]) + 0.5, y(base + n), x(edges[i + 1]) - x(edges[i]) - 1,
                                 y(base) - y(base + n), color,
                                 f"{name}: {n} rows with logit in [{edges[i]:.2f}, {edges[i + 1]:.2f})"))
            base += n
    for k, (name, color, _) in enumerate(stacks):
        body += [rect(width - 150, 18 + 18 * k, 12, 12, color), text(width - 132, 29 + 18 * k, name)]
    return svg(width, height, body, title)


def band_woe(name: str, rows: list[dict], title: str, reach: float) -> str:
    """One band: a bar per value (final WOE), its learned rows, and each fold's WOE as a dot, on a
    WOE axis from -reach to reach (the same for every band of a report)."""
    row, left, right = 24, 170, 120
    width = 560
    x = Scale(-reach, reach, left, width - right)
    height = 46 + row * len(rows)
    body = x_axis(x, height - 40, 6, ticks(-reach, reach, 6), f"WOE of {name} (final mapping; dots: per fold)")
    body.append(line(x(0), 6, x(0), height - 40, stroke="#444"))
    for i, r in enumerate(rows):
        y = 8 + i * row
        body.append(text(left - 8, y + 13, r["value"], "end"))  # its rule is in the table beside
        if r["woe"] is None:
            body.append(text(x(0) + 6, y + 13, "unseen", fill=NEUTRAL, size=11))
        else:
            body.append(rect(x(0), y + 2, x(r["woe"]) - x(0), 14, POSITIVE if r["woe"] > 0 else NEGATIVE,
                             f"{name} = {r['value']}: WOE {r['woe']:.4f}, {r['n_rows']} learned rows"))
        for w in r["folds"]:
            body.append(circle(x(w), y + 9, 3, FOLD_DOT, f"fold WOE {w:.4f}", 0.9))
        count = "n/a" if r["n_rows"] is None else f"{r['n_rows']:,}"
        body.append(text(width - right + 10, y + 13, f"{count} rows", size=11, fill="#444"))
    return svg(width, height, body, title)
