"""Small server-side SVG charts for the admin overview: no JavaScript, no CDN, works offline."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 36
PALETTE = ["#2f7ed8", "#d9534f", "#5cb85c", "#f0ad4e", "#8e44ad", "#16a085", "#7f8c8d"]
# The same meaning, the same colour, on every chart: served blue, the client's errors amber, provider failures red.
SERVED, FAILED, CLIENT, QUIET = PALETTE[0], PALETTE[1], PALETTE[3], PALETTE[6]
# A series: (name, values), or (name, values, colour); without a colour, the next one of the palette.
Series = tuple[str, list] | tuple[str, list, str]


def _colored(series: list[Series]) -> list[tuple[str, list, str]]:
    return [(s[0], s[1], s[2] if len(s) > 2 else PALETTE[k % len(PALETTE)]) for k, s in enumerate(series)]


def _frame(title: str, labels: list[str], peak: float, body: list[str], legend: list[tuple[str, str]]) -> SafeString:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="qalby-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold" fill="#333">{escape(title)}</text>',
    ]
    for i in range(5):  # horizontal grid with values
        y = TOP + plot_h - plot_h * i / 4
        value = peak * i / 4
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#666">{value:g}</text>')
    step = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        if i % step == 0:
            x = LEFT + plot_w * (i + 0.5) / max(len(labels), 1)
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" text-anchor="middle" '
                         f'fill="#666">{escape(label)}</text>')
    parts.extend(body)
    x = LEFT
    for name, color in legend:
        parts.append(f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#333">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    parts.append("</svg>")
    # Safe: every label above is escaped and every number formatted by us.
    return mark_safe("".join(parts))


def _peak(values: list[float]) -> float:
    top = max([v for v in values if v is not None] or [0])
    if top <= 0:
        return 1
    magnitude = 10 ** (len(str(int(top))) - 1)
    return float(((int(top) // magnitude) + 1) * magnitude)


def bars(labels: list[str], series: list[Series], title: str) -> SafeString:
    """Stacked bars, one stack per label."""
    series = _colored(series)
    totals = [sum(values[i] for _, values, _ in series) for i in range(len(labels))]
    peak = _peak(totals)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    body = []
    for i in range(len(labels)):
        base = 0.0
        for name, values, color in series:
            value = values[i]
            if value:
                h = plot_h * value / peak
                y = TOP + plot_h - plot_h * base / peak - h
                body.append(f'<rect x="{LEFT + slot * i + slot * 0.15:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                            f'height="{h:.1f}" fill="{color}"><title>{escape(labels[i])} '
                            f'{escape(name)}: {value:g}</title></rect>')
                base += value
    legend = [(name, color) for name, _, color in series]
    return _frame(title, labels, peak, body, legend)


def lines(labels: list[str], series: list[Series], title: str) -> SafeString:
    """One polyline per series; gaps where a value is None."""
    series = _colored(series)
    peak = _peak([v for _, values, _ in series for v in values if v is not None])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    body = []
    for _name, values, color in series:
        points = [
            (LEFT + plot_w * (i + 0.5) / max(len(labels), 1), TOP + plot_h - plot_h * v / peak)
            for i, v in enumerate(values) if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    legend = [(name, color) for name, _, color in series]
    return _frame(title, labels, peak, body, legend)
