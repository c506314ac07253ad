"""Raw samples of a run, written as it goes: one CSV row per request, and a histogram of every
inter-token gap (a row per gap would be tens of millions of rows in a soak; log-spaced buckets,
20 per decade, keep ~12% resolution in constant memory).

Each locust process writes its own files (``requests-<tag>.csv``) so distributed runs on one
machine (``--processes``) need no coordination; the report reads them all.
"""

from __future__ import annotations

import csv
import math
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class RequestSample:
    started_at: float  # unix seconds
    scenario: str
    model: str
    key: int  # index of the API key used (never the key itself)
    users: int  # users running in this process when the request started
    outcome: str  # "ok" or an error kind (http_503, stream_error:..., timeout, connection, ...)
    ttft_s: float | None
    e2e_s: float
    prompt_tokens: int | None
    output_tokens: int
    itl_mean_s: float | None
    itl_max_s: float | None


COLUMNS = [f.name for f in fields(RequestSample)]


class GapHistogram:
    PER_DECADE = 20
    LOW = 1e-4  # 0.1 ms: the first bucket holds everything below
    BUCKETS = 6 * PER_DECADE + 1  # up to 100 s, the last bucket holds everything above

    def __init__(self) -> None:
        self.counts = [0] * self.BUCKETS

    def add(self, seconds: float) -> None:
        index = 0 if seconds <= self.LOW else math.ceil(math.log10(seconds / self.LOW) * self.PER_DECADE)
        self.counts[min(index, self.BUCKETS - 1)] += 1

    @classmethod
    def upper_edge(cls, index: int) -> float:
        return float(cls.LOW * 10 ** (index / cls.PER_DECADE))


class SampleWriter:
    def __init__(self, directory: Path, tag: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.tag = directory, tag
        self._file: TextIO = (directory / f"requests-{tag}.csv").open("w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(COLUMNS)
        self.gaps = GapHistogram()

    def add(self, sample: RequestSample, gaps: list[float]) -> None:
        self._csv.writerow(["" if value is None else value for value in astuple(sample)])
        for gap in gaps:
            self.gaps.add(gap)

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        with (self.directory / f"itl-histogram-{self.tag}.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["le_s", "count"])
            for index, count in enumerate(self.gaps.counts):
                writer.writerow([f"{GapHistogram.upper_edge(index):.6g}", count])


def read_requests(directory: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(directory.glob("requests-*.csv")):
        with path.open(newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def read_gap_histogram(directory: Path) -> list[tuple[float, int]]:
    """Merged over every process: (upper edge in seconds, count)."""
    merged: dict[float, int] = {}
    for path in sorted(directory.glob("itl-histogram-*.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                edge = float(row["le_s"])
                merged[edge] = merged.get(edge, 0) + int(row["count"])
    return sorted(merged.items())
