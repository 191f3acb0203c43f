"""Graph PNGs of Prometheus range queries.

Pure apart from CPU: no I/O, no clock (`now` is passed in). Drawing uses matplotlib's
object API (`Figure` + `FigureCanvasAgg`) and never pyplot, so there is no global figure
state and separate renders may run in separate threads (the enrichment flow renders in a
worker thread to keep the event loop free).

Series are anything with `labels` and `points` (see `SeriesLike`), e.g.
`bot.clients.prometheus.Series`; this module does not import the integration.
"""

from __future__ import annotations

import io
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import matplotlib.dates as _mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.ticker import FuncFormatter
from numpy.typing import NDArray

from bot.core.checks import axis_scale, format_value, plain_number

# matplotlib.dates ships no type information; used through this one untyped name.
mdates: Any = _mdates

WIDTH_PX = 1000
HEIGHT_PX = 450
DPI = 100
MAX_SERIES = 10
MAX_LABEL_CHARS = 40
MAX_QUERY_CHARS = 140

_ALERT_COLOR = "#b00020"
_THRESHOLD_COLOR = "#e65100"
_MUTED = "#666666"


class SeriesLike(Protocol):
    """A time series: labels and (unix seconds, value) points."""

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def points(self) -> Sequence[tuple[float, float]]: ...


S = TypeVar("S", bound=SeriesLike)


@dataclass(frozen=True, slots=True)
class GraphSpec:
    """What to draw: a title, the PromQL (shown small under the title), the unit, a threshold.

    `unit` is one of: "" (plain number, k/M/G), "%" (values already 0-100), "ratio" or
    "percentunit" (0-1 shown as %), "s" or "ms" (durations: µs/ms/s/min/h/d), "bytes" or
    "B" (KiB/MiB/GiB, binary), "bytes/s" or "B/s", or any other text such as "req/s"
    (k/M/G plus that text).
    """

    title: str
    query: str
    unit: str = ""
    threshold: float | None = None


# --------------------------------------------------------------------------- legend


def _format_labels(labels: Mapping[str, str], keys: Sequence[str]) -> str:
    parts: list[str] = []
    for key in keys:
        if key not in labels:
            continue
        parts.append(labels[key] if key == "__name__" else f"{key}={labels[key]}")
    return ", ".join(parts)


def _ordered_keys(keys: set[str]) -> list[str]:
    return sorted(keys, key=lambda k: (k != "__name__", k))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _truncate_middle(text: str, limit: int) -> str:
    # Keeps both ends: pod names and the like differ in their suffix.
    if len(text) <= limit:
        return text
    tail = (limit - 1) // 3
    return text[: limit - 1 - tail] + "…" + text[len(text) - tail :]


def series_names(label_sets: Sequence[Mapping[str, str]], limit: int = MAX_LABEL_CHARS) -> list[str]:
    """Legend names built from the labels that differ between series.

    Labels with the same value in every series are dropped; `__name__` comes first and shows
    as the bare metric name. A lone series (or identical label sets) is named by all its
    labels, and a series without labels is called "value".
    """
    if not label_sets:
        return []
    all_keys: set[str] = set().union(*(set(labels) for labels in label_sets))
    first = label_sets[0]
    common = {
        key
        for key in all_keys
        if all(key in labels and labels[key] == first.get(key) for labels in label_sets)
    }
    distinguishing = _ordered_keys(all_keys - common)
    names: list[str] = []
    for labels in label_sets:
        name = _format_labels(labels, distinguishing) if distinguishing else ""
        if not name:
            name = _format_labels(labels, _ordered_keys(set(labels))) or "value"
        names.append(_truncate_middle(name, limit))
    return names


def _finite_max(points: Sequence[tuple[float, float]]) -> float:
    best = -math.inf
    for _, value in points:
        if math.isfinite(value) and value > best:
            best = value
    return best


def top_series(series: Sequence[S], limit: int = MAX_SERIES) -> list[S]:
    """All series when there are at most `limit`; otherwise the `limit` with the largest max."""
    if len(series) <= limit:
        return list(series)
    ranked = sorted(series, key=lambda s: _finite_max(s.points), reverse=True)
    return ranked[:limit]


# --------------------------------------------------------------------------- drawing


@dataclass(frozen=True, slots=True)
class GraphPlan:
    """What a graph will show: its title, the series drawn (at most MAX_SERIES), their names."""

    title: str
    series: Sequence[SeriesLike]
    names: list[str]


def plan_graph(spec: GraphSpec, series: Sequence[SeriesLike]) -> GraphPlan:
    """Pick the series to draw and name them; beyond MAX_SERIES the title says "top 10 of N"."""
    shown = top_series(series)
    title = spec.title if len(series) <= MAX_SERIES else f"{spec.title} (top {MAX_SERIES} of {len(series)})"
    return GraphPlan(title=title, series=shown, names=series_names([s.labels for s in shown]))


def _charmap(props: FontProperties) -> set[int]:
    return set(get_font(findfont(props)).get_charmap())


def _safe_text(text: str, charmap: set[int]) -> str:
    """Text the font can draw: no control characters, no missing glyphs, no mathtext."""
    out: list[str] = []
    for char in text:
        if unicodedata.category(char).startswith("C"):
            out.append(" ")
        elif char == " " or ord(char) in charmap:
            out.append(char)
        else:
            out.append("?")
    # A pair of "$" would switch matplotlib to mathtext; "\$" is drawn as a plain "$".
    return "".join(out).replace("$", r"\$")


def _datenum(moment: datetime) -> float:
    """Matplotlib's date number (days since its epoch) for an aware datetime."""
    return float(mdates.date2num(moment))


def _arrays(points: Sequence[tuple[float, float]]) -> tuple[NDArray[np.datetime64], NDArray[np.float64]]:
    times = np.array([round(t * 1000) for t, _ in points], dtype="int64").astype("datetime64[ms]")
    values = np.array([v for _, v in points], dtype="float64")
    values[~np.isfinite(values)] = np.nan  # NaN and ±Inf are drawn as gaps
    return times, values


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_graph(
    spec: GraphSpec,
    series: Sequence[SeriesLike],
    *,
    start: datetime,
    end: datetime,
    alert_start: datetime | None,
    now: datetime,
) -> bytes:
    """Draw `series` over [start, end] as a WIDTH_PX x HEIGHT_PX PNG and return its bytes."""
    sans = FontProperties(family=["sans-serif"])
    mono = FontProperties(family=["monospace"])
    sans_chars = _charmap(sans)
    mono_chars = _charmap(mono)

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    plan = plan_graph(spec, series)
    shown, names, title = plan.series, plan.names, plan.title
    fig.suptitle(_safe_text(title, sans_chars), fontsize=13, fontweight="bold", x=0.01, ha="left")
    ax.set_title(
        _safe_text(_truncate(" ".join(spec.query.split()), MAX_QUERY_CHARS), mono_chars),
        fontsize=8,
        family="monospace",
        color=_MUTED,
        loc="left",
    )

    arrays = [_arrays(item.points) for item in shown]
    finite_values = [values[~np.isnan(values)] for _, values in arrays]
    extremes = [float(v.min()) for v in finite_values if v.size] + [
        float(v.max()) for v in finite_values if v.size
    ]
    has_data = bool(extremes)
    threshold = spec.threshold if spec.threshold is not None and math.isfinite(spec.threshold) else None
    if threshold is not None:
        extremes.append(threshold)
    # Values are plotted already divided into the display unit (MiB, ms, ...), so the tick
    # locator picks round numbers in that unit.
    divisor, suffix = axis_scale(spec.unit, max((abs(x) for x in extremes), default=0.0))

    for (times, values), finite, name in zip(arrays, finite_values, names, strict=True):
        ax.plot(
            times,
            values / divisor,
            linewidth=1.4,
            marker="o" if finite.size <= 2 else None,
            markersize=3,
            label=_safe_text(name, sans_chars),
        )

    if not has_data:
        ax.text(
            0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", fontsize=18, color=_MUTED
        )

    if threshold is not None:
        ax.axhline(
            threshold / divisor,
            color=_THRESHOLD_COLOR,
            linestyle="--",
            linewidth=1.2,
            label=_safe_text(f"threshold {format_value(threshold, spec.unit)}", sans_chars),
        )

    ax.set_xlim(_datenum(start), _datenum(end))
    if alert_start is not None:
        _mark_alert(ax, alert_start, start, end)

    if extremes:
        low, high = min(extremes) / divisor, max(extremes) / divisor
        span = high - low
        pad = span * 0.08 if span > 0 else (abs(high) * 0.1 or 1.0)
        bottom = 0.0 if low >= 0 else low - pad
        ax.set_ylim(bottom, high + pad)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{plain_number(y)}{suffix}"))
    else:
        ax.set_yticks([])

    # matplotlib.dates has no type stubs.
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlabel("time (UTC)", fontsize=9, color=_MUTED)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.tick_params(labelsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)
    fig.text(0.005, 0.005, f"rendered {_utc(now)} UTC", ha="left", va="bottom", fontsize=7, color=_MUTED)

    buffer = io.BytesIO()
    # The title and query also go into the PNG's tEXt chunks (alt text, tests).
    fig.savefig(
        buffer,
        format="png",
        dpi=DPI,
        metadata={"Title": title, "Description": spec.query, "Software": "incidentbot"},
    )
    return buffer.getvalue()


def _mark_alert(ax: Axes, alert_start: datetime, start: datetime, end: datetime) -> None:
    label = f"alert {alert_start.astimezone(UTC):%H:%M:%S} UTC"
    if alert_start < start:
        ax.text(
            0.005,
            0.98,
            f"◀ {label} (before this window)",
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=8,
            color=_ALERT_COLOR,
        )
        return
    if alert_start > end:
        return
    x = _datenum(alert_start)
    ax.axvline(x, color=_ALERT_COLOR, linewidth=1.3)
    near_right = (alert_start - start) > 0.75 * (end - start)
    ax.annotate(
        label,
        xy=(x, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(-4 if near_right else 4, -4),
        textcoords="offset points",
        ha="right" if near_right else "left",
        va="top",
        fontsize=8,
        color=_ALERT_COLOR,
        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
    )
