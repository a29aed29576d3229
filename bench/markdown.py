"""How the report writes figures and tables in Markdown."""

import json
from typing import Any

from bench.results import Latency, Measurement

NONE = "-"
"""A figure that was not measured."""


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def number(value: float | None) -> str:
    """Three significant figures or so: 13,580, 82.5, 0.95."""
    if value is None:
        return NONE
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10 or float(value).is_integer():
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.2f}"


def ms(latency: Latency) -> list[str]:
    return [number(latency.p50), number(latency.p95), number(latency.p99)]


def settle(latency: Latency | None) -> str:
    return f"{number(latency.p50)} / {number(latency.p99)}" if latency else NONE


def share(value: float | None) -> str:
    return NONE if value is None else f"{value:.1%}"


def ratio(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}"


def errors(m: Measurement) -> str:
    return f"{m.errors:,} ({m.error_rate:.2%})" if m.errors else "0"


def throughput(m: Measurement) -> str:
    if m.orders_per_s is not None:
        return f"{number(m.orders_per_s)} orders/s"
    return f"{number(m.rps)} req/s"


def with_unit(value: float | None, unit: str) -> str:
    return "not measured" if value is None else f"{number(value)} {unit}".rstrip()


def value(data: Any) -> str:
    """A machine fact or a setting, whatever its type."""
    if isinstance(data, list | tuple):
        return ", ".join(str(item) for item in data)
    if isinstance(data, dict):
        return json.dumps(data)
    return NONE if data is None else str(data)
