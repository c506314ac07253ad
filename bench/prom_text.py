"""Prometheus text exposition, read the simple way the real-engine benchmarks need."""

from __future__ import annotations


def scrape(text: str) -> dict[tuple[str, str], float]:
    """(metric name, label text) -> value."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            name, _, labels = head.partition("{")
            out[(name, labels)] = float(value)
    return out


def total(samples: dict[tuple[str, str], float], name: str) -> float:
    """The sum over every label set of one metric."""
    return sum(v for (n, _), v in samples.items() if n == name)
