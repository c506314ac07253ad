"""The fixture exporter serves parseable metrics, every series labelled as a fixture."""

from __future__ import annotations

import re
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from observability.fixtures.exporter import Scene, serve
from observability.queries import all_queries


def test_every_series_is_labelled_fixture_and_help_says_so() -> None:
    families = list(text_string_to_metric_families(Scene("ns", "org/Model-3.1").render()))
    assert families
    for fam in families:
        assert fam.documentation.startswith("FIXTURE"), fam.name
        for s in fam.samples:
            assert s.labels["fixture"] == "recorded-shape", s


def test_object_names_are_valid_for_kubernetes() -> None:
    text = Scene("ns", "org/Model-3.1").render()
    assert 'deployment="engine-org-model-3-1"' in text


def test_serves_metrics_over_http() -> None:
    server = serve(Scene("ns", "m"), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"DCGM_FI_DEV_GPU_UTIL{" in r.read()
    finally:
        server.shutdown()
        server.server_close()


def test_covers_every_metric_the_gateway_and_vllm_do_not_export() -> None:
    """Each non-inferstack, non-vllm metric a panel reads is served by the fixture."""
    served = {f.name for f in text_string_to_metric_families(Scene("ns", "m").render())}
    for q in all_queries():
        # (?<![:\w]): not the middle part of a recorded name such as nodepool:karpenter_...:per_hour
        for name in re.findall(r"(?<![:\w])((?:DCGM_FI|kube|karpenter|keda)_[A-Za-z_]+)\b", q.expr):
            assert name in served, f"{q.where}: {name}"
