from inferstack.upstream.endpoint import Endpoint, EngineLoad
from inferstack.upstream.load import parse_load

VLLM = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny-llama"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny-llama"} 2.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="tiny-llama",reason="capacity"} 9.0
vllm:kv_cache_usage_perc{engine="0",model_name="tiny-llama"} 0.25
vllm:prefix_cache_hits_total{engine="0",model_name="tiny-llama"} 1024.0
"""


def test_parses_vllm_v1_gauges_and_ignores_lookalike_names() -> None:
    load = parse_load(VLLM, at=5.0)
    assert load == EngineLoad(running=3.0, waiting=2.0, kv_cache_usage=0.25, at=5.0)


def test_no_vllm_metrics_gives_no_load() -> None:
    assert parse_load(b"process_cpu_seconds_total 1.0\n", at=0.0) is None


def test_stale_scrapes_steer_nothing() -> None:
    endpoint = Endpoint("http://e", load=EngineLoad(1, 1, 0.1, at=10.0))
    assert endpoint.fresh_load(now=11.0, max_age=3.0) is not None
    # "Older than load_max_age steers nothing": exactly that old still steers (13.0 - 10.0 is exact).
    assert endpoint.fresh_load(now=13.0, max_age=3.0) is not None
    assert endpoint.fresh_load(now=13.5, max_age=3.0) is None
