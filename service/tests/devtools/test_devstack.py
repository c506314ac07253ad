"""The local-stack helpers `make up` relies on (the stack itself runs in the e2e tests)."""

from __future__ import annotations

import json
import socket

import pytest

from inferstack_devstack import ensure_free, free_port, prometheus_config


def test_a_listening_port_is_refused_with_a_clear_message() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} is already in use; the gateway"):
            ensure_free(port, "the gateway (GATEWAY_PORT)")
    ensure_free(free_port(), "anything")  # a free port passes


def test_prometheus_config_labels_every_target_with_the_namespace() -> None:
    config = json.loads(prometheus_config({"inferstack-gateway": ["127.0.0.1:8080"]}, ["/r.yaml"], "5s"))
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "inferstack-gateway"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8080"], "labels": {"namespace": "inferstack"}}]
    assert config["rule_files"] == ["/r.yaml"]
