"""Pure parts of graphs and checks: step choice, units, legend names, step checks."""

from __future__ import annotations

import asyncio
import math
import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from bot.clients.prometheus import MAX_POINTS, Series, choose_step
from bot.core.checks import CHECK_OPS, axis_scale, evaluate_check, evaluate_check_all, format_value
from bot.render.graph import (
    HEIGHT_PX,
    WIDTH_PX,
    GraphSpec,
    plan_graph,
    render_graph,
    series_names,
    top_series,
)

NOW = datetime(2026, 11, 22, 16, 30, tzinfo=UTC)


def png_info(png: bytes) -> tuple[int, int, dict[str, str]]:
    """(width, height, tEXt chunks) of a PNG, checking the signature and chunk CRCs."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset = 8
    width = height = -1
    texts: dict[str, str] = {}
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        data = png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + data) == crc
        if kind == b"IHDR":
            width, height = struct.unpack(">II", data[:8])
        elif kind == b"tEXt":
            key, _, value = data.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        offset += 12 + length
    return width, height, texts


# ----------------------------------------------------------------------------- choose_step


@pytest.mark.parametrize(
    "span",
    [
        timedelta(seconds=30),
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=6),
        timedelta(days=1),
        timedelta(days=7),
        timedelta(days=30),
        timedelta(days=400),
        timedelta(days=3650),
    ],
)
def test_choose_step_stays_in_target_and_under_limit(span: timedelta) -> None:
    step = choose_step(NOW - span, NOW)
    points = span.total_seconds() / step
    assert step >= 1
    assert points <= 600
    assert points < MAX_POINTS
    if span.total_seconds() >= 300:  # long enough to need more than 1 s steps
        assert points >= 300


def test_choose_step_known_values() -> None:
    assert choose_step(NOW - timedelta(hours=1), NOW) == 10.0
    assert choose_step(NOW - timedelta(days=30), NOW) == 7200.0
    assert choose_step(NOW - timedelta(seconds=10), NOW) == 1.0
    assert choose_step(NOW, NOW) == 1.0
    assert choose_step(NOW, NOW - timedelta(hours=1)) == 1.0


# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (0.0042, "s", "4.2 ms"),
        (0.25, "s", "250 ms"),
        (0.000004, "s", "4 µs"),
        (1.5, "s", "1.5 s"),
        (300, "s", "5 min"),
        (3 * 3600, "s", "3 h"),
        (250, "ms", "250 ms"),
        (2500, "ms", "2.5 s"),
        (512, "bytes", "512 B"),
        (1536, "bytes", "1.5 KiB"),
        (3 * 2**20, "bytes", "3 MiB"),
        (5 * 2**30, "bytes", "5 GiB"),
        (2**20, "bytes/s", "1 MiB/s"),
        (42.5, "%", "42.5%"),
        (0.425, "ratio", "42.5%"),
        (0.5, "req/s", "0.5 req/s"),
        (1500, "req/s", "1.5k req/s"),
        (2_000_000, "req/s", "2M req/s"),
        (1234.5, "", "1.234k"),
        (7, "", "7"),
        (0, "s", "0 s"),
        (-0.0, "", "0"),
        (math.nan, "s", "NaN"),
        (math.inf, "bytes", "+Inf"),
    ],
)
def test_format_value(value: float, unit: str, expected: str) -> None:
    assert format_value(value, unit) == expected


def test_axis_scale_uses_one_unit_for_the_axis() -> None:
    assert axis_scale("s", 0.8) == (1e-3, " ms")
    assert axis_scale("bytes", 3 * 2**30) == (2.0**30, " GiB")
    assert axis_scale("ratio", 1.0) == (0.01, "%")
    assert axis_scale("req/s", 1500) == (1000.0, "k req/s")
    assert axis_scale("", math.nan) == (1.0, "")


# ----------------------------------------------------------------------------- legend


def test_series_names_drop_common_labels() -> None:
    labels = [
        {"__name__": "http_requests_total", "job": "api", "code": "500", "instance": "a:9"},
        {"__name__": "http_requests_total", "job": "api", "code": "502", "instance": "a:9"},
        {"__name__": "http_requests_total", "job": "api", "code": "500", "instance": "b:9"},
    ]
    assert series_names(labels) == [
        "code=500, instance=a:9",
        "code=502, instance=a:9",
        "code=500, instance=b:9",
    ]


def test_series_names_metric_name_first_when_it_differs() -> None:
    labels = [{"__name__": "up", "job": "x"}, {"__name__": "down", "job": "x"}]
    assert series_names(labels) == ["up", "down"]


def test_series_names_single_series_and_no_labels() -> None:
    assert series_names([{"service": "api", "code": "500"}]) == ["code=500, service=api"]
    assert series_names([{}]) == ["value"]
    assert series_names([]) == []
    # A series missing a label the others have is named by all its labels.
    assert series_names([{"code": "500", "job": "j"}, {"job": "j"}]) == ["code=500", "job=j"]


def test_series_names_truncate_in_the_middle() -> None:
    names = series_names([{"pod": "api-" + "x" * 60 + "-abc12"}, {"pod": "api-" + "x" * 60 + "-def34"}], 30)
    assert all(len(n) == 30 for n in names)
    assert names[0].startswith("pod=api-") and names[0].endswith("-abc12")
    assert names[1].endswith("-def34")


def _series(n: int) -> list[Series]:
    t0 = NOW.timestamp() - 600
    return [Series({"idx": str(i)}, [(t0 + 60 * k, float(i * k)) for k in range(11)]) for i in range(n)]


def test_top_series_keeps_the_largest() -> None:
    series = _series(15)
    series[3].points.append((NOW.timestamp(), math.inf))  # ignored: only finite values count
    top = top_series(series)
    assert [s.labels["idx"] for s in top] == [str(i) for i in range(14, 4, -1)]
    assert top_series(series[:4]) == series[:4]


def test_plan_graph_title_says_top_10_of_n() -> None:
    spec = GraphSpec("Errors", "x", "req/s", None)
    plan = plan_graph(spec, _series(15))
    assert plan.title == "Errors (top 10 of 15)"
    assert len(plan.series) == 10
    assert plan.names[0] == "idx=14"
    assert plan_graph(spec, _series(10)).title == "Errors"


# ----------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("op", "threshold", "value", "passed", "text"),
    [
        (">", 5, 10, True, "10 > 5"),
        (">", 5, 3, False, "3 is not > 5"),
        (">=", 5, 5, True, "5 >= 5"),
        ("<", 0.5, 0.25, True, "0.25 < 0.5"),
        ("<=", 1, 2, False, "2 is not <= 1"),
        ("==", 0, 0, True, "0 == 0"),
        ("!=", 0, 0, False, "0 is not != 0"),
        (">", 5, None, None, "no data"),
        (">", 5, math.nan, None, "value is NaN"),
        (">", 5, math.inf, True, "+Inf > 5"),
    ],
)
def test_evaluate_check(
    op: str, threshold: float, value: float | None, passed: bool | None, text: str
) -> None:
    outcome = evaluate_check(op, threshold, value)
    assert outcome.passed is passed
    assert outcome.text == text


def test_evaluate_check_all_samples() -> None:
    assert evaluate_check_all("<", 5, []) == evaluate_check("<", 5, None)
    assert evaluate_check_all("<", 5, [1, 2]).passed is True
    assert evaluate_check_all("<", 5, [1, 2]).text == "1 < 5 (all 2 values)"
    assert evaluate_check_all("<", 5, [4]).text == "4 < 5"
    failing = evaluate_check_all("<", 5, [1, 7, 9])
    assert (failing.passed, failing.text) == (False, "2 of 3 values fail: 7 is not < 5")
    nan = evaluate_check_all("<", 5, [1, math.nan])
    assert (nan.passed, nan.text) == (None, "1 of 2 values unknown: value is NaN")


def test_evaluate_check_rejects_unknown_operator() -> None:
    assert {"<", "<=", ">", ">=", "==", "!="} == CHECK_OPS
    with pytest.raises(ValueError, match="unknown check operator"):
        evaluate_check("=>", 1, 2)


# ----------------------------------------------------------------------------- rendering


def test_render_graph_size_title_and_odd_input() -> None:
    start = NOW - timedelta(hours=1)
    series = [
        Series(
            {"a": "1"}, [(start.timestamp() + 60 * k, v) for k, v in enumerate([1, math.nan, 3, math.inf, 2])]
        ),
        Series({"a": "2 $x$ \u4e2d\n"}, [(start.timestamp(), 5.0)]),  # mathtext, missing glyph, control char
    ]
    png = render_graph(
        GraphSpec("Cost in $ per req", "sum(x)", "bytes", 4.0),
        series,
        start=start,
        end=NOW,
        alert_start=NOW - timedelta(minutes=5),
        now=NOW,
    )
    width, height, texts = png_info(png)
    assert (width, height) == (WIDTH_PX, HEIGHT_PX)
    assert texts["Title"] == "Cost in $ per req"
    assert texts["Description"] == "sum(x)"


async def test_render_graph_async_no_data() -> None:
    png = await asyncio.to_thread(
        render_graph,
        GraphSpec("Nothing", "absent_metric", "s", None),
        [],
        start=NOW - timedelta(minutes=30),
        end=NOW,
        alert_start=NOW - timedelta(hours=2),  # before the window
        now=NOW,
    )
    assert png_info(png)[:2] == (WIDTH_PX, HEIGHT_PX)


async def test_concurrent_renders_in_threads_are_identical() -> None:
    start = NOW - timedelta(minutes=10)
    spec = GraphSpec("Parallel", "x", "s", 5.0)
    pngs = await asyncio.gather(
        *(
            asyncio.to_thread(render_graph, spec, _series(12), start=start, end=NOW, alert_start=NOW, now=NOW)
            for _ in range(6)
        )
    )
    assert len(set(pngs)) == 1
    assert png_info(pngs[0])[2]["Title"] == "Parallel (top 10 of 12)"
