"""Runbook step checks and the display of measured values: pure, no I/O.

A check compares every sample a query returned with a threshold (`value <op> threshold`);
values are shown scaled to their own size and unit ("4.2 ms", "3 GiB").
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# --------------------------------------------------------------------------- units

_SI: tuple[tuple[float, str], ...] = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_BINARY: tuple[tuple[float, str], ...] = (
    (2.0**50, "PiB"),
    (2.0**40, "TiB"),
    (2.0**30, "GiB"),
    (2.0**20, "MiB"),
    (2.0**10, "KiB"),
)
_DURATIONS: tuple[tuple[float, float, str], ...] = (
    # (use when magnitude >= this many seconds, divisor, suffix)
    (2 * 86400.0, 86400.0, "d"),
    (2 * 3600.0, 3600.0, "h"),
    (120.0, 60.0, "min"),
    (1.0, 1.0, "s"),
    (1e-3, 1e-3, "ms"),
    (0.0, 1e-6, "µs"),
)


def plain_number(x: float) -> str:
    if x == 0:
        return "0"  # also turns -0.0 into "0"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


def axis_scale(unit: str, magnitude: float) -> tuple[float, str]:
    """(divisor, suffix) to show values of about `magnitude` in `unit`: value/divisor + suffix.

    >>> axis_scale("bytes", 3 * 2**30)
    (1073741824.0, ' GiB')
    """
    magnitude = abs(magnitude) if math.isfinite(magnitude) else 0.0
    key = unit.strip()
    lowered = key.lower()
    if lowered in {"%", "percent"}:
        return 1.0, "%"
    if lowered in {"ratio", "percentunit"}:
        return 0.01, "%"
    if lowered in {"s", "sec", "seconds", "ms"}:
        base = 1e-3 if lowered == "ms" else 1.0
        seconds = magnitude * base
        if seconds == 0:
            return 1.0, " ms" if lowered == "ms" else " s"
        for at_least, divisor, suffix in _DURATIONS:
            if seconds >= at_least:
                return divisor / base, f" {suffix}"
        return 1.0 / base, " s"
    if lowered in {"bytes", "b", "bytes/s", "b/s", "bps"}:
        per_second = "/s" if lowered in {"bytes/s", "b/s", "bps"} else ""
        for divisor, suffix in _BINARY:
            if magnitude >= divisor:
                return divisor, f" {suffix}{per_second}"
        return 1.0, f" B{per_second}"
    suffix_unit = f" {key}" if key else ""
    for divisor, prefix in _SI:
        if magnitude >= divisor:
            return divisor, f"{prefix}{suffix_unit}"
    return 1.0, suffix_unit


def format_value(value: float, unit: str) -> str:
    """One value with its unit, scaled for its own size: 0.0042 s -> "4.2 ms"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    divisor, suffix = axis_scale(unit, value)
    return f"{plain_number(value / divisor)}{suffix}"


# --------------------------------------------------------------------------- checks

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
CHECK_OPS: frozenset[str] = frozenset(_OPS)


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """Result of a runbook step check: passed True/False, or None when there is no value."""

    passed: bool | None
    text: str


def evaluate_check(op: str, threshold: float, value: float | None) -> CheckOutcome:
    """Compare a query's value with a threshold: `value <op> threshold`.

    `op` is one of `CHECK_OPS` (anything else raises ValueError; validate playbooks at load).
    No value gives passed=None "no data"; NaN gives passed=None as well.
    """
    compare = _OPS.get(op)
    if compare is None:
        raise ValueError(f"unknown check operator {op!r}; use one of {' '.join(sorted(CHECK_OPS))}")
    if value is None:
        return CheckOutcome(None, "no data")
    if math.isnan(value):
        return CheckOutcome(None, "value is NaN")
    shown_value = format_value(value, "")
    shown_threshold = format_value(threshold, "")
    if compare(value, threshold):
        return CheckOutcome(True, f"{shown_value} {op} {shown_threshold}")
    return CheckOutcome(False, f"{shown_value} is not {op} {shown_threshold}")


def evaluate_check_all(op: str, threshold: float, values: Sequence[float]) -> CheckOutcome:
    """A check over every sample a query returned: all must satisfy `value <op> threshold`.

    No samples gives passed=None "no data". Otherwise the first failing (or NaN) sample decides,
    e.g. "2 of 3 values fail: 7 is not < 5"; if all pass, the text shows the first value.
    """
    if not values:
        return evaluate_check(op, threshold, None)
    outcomes = [evaluate_check(op, threshold, value) for value in values]
    failed = [o for o in outcomes if o.passed is False]
    unknown = [o for o in outcomes if o.passed is None]
    if failed:
        prefix = f"{len(failed)} of {len(outcomes)} values fail: " if len(outcomes) > 1 else ""
        return CheckOutcome(False, prefix + failed[0].text)
    if unknown:
        prefix = f"{len(unknown)} of {len(outcomes)} values unknown: " if len(outcomes) > 1 else ""
        return CheckOutcome(None, prefix + unknown[0].text)
    suffix = f" (all {len(outcomes)} values)" if len(outcomes) > 1 else ""
    return CheckOutcome(True, outcomes[0].text + suffix)
