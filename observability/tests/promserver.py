"""Start a throwaway Prometheus for a test: temp storage, free port, our rules, given targets."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"


@dataclass(frozen=True)
class Job:
    name: str
    targets: list[str]  # host:port
    labels: dict[str, str]
    honor_labels: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(jobs: list[Job], interval: str = "1s") -> str:
    """JSON is YAML: no templating of YAML text."""
    return json.dumps({
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": sorted(str(p) for p in RULES_DIR.glob("*.yaml")),
        "scrape_configs": [
            {"job_name": j.name, "honor_labels": j.honor_labels,
             "static_configs": [{"targets": j.targets, "labels": j.labels}]}
            for j in jobs
        ],
    }, indent=2)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def prometheus(workdir: Path, jobs: list[Job], interval: str = "1s", timeout: float = 30.0) -> Iterator[str]:
    """Yield the base URL of a running Prometheus; stop it (and only it) afterwards."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed: run scripts/install-observability.sh")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    cfg.write_text(config(jobs, interval))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _ready(url):
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {timeout}s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
