"""One attempt through the gateway against a fake engine (real HTTP): a stream's first byte is due by
``timeouts.first_byte``, which the attempt hands to the relay with the stream's headers."""

from __future__ import annotations

import time

import httpx

from inferstack_fake_engine import Behaviour

from ..test_relay_fake_engine import CHAT, fleet


async def test_a_stream_whose_first_token_is_later_than_first_byte_times_out_then_not_at_the_total() -> None:
    # The engine sends its headers at once and its first token after 5 s; first_byte is 0.5 s and the
    # total 30 s. The attempt times out at first_byte (a 504 before anything reached the client).
    async with (
        fleet(Behaviour(ttft=5), timeouts={"first_byte": 0.5}, retry={"max_retries": 0}) as (url, _, _app),
        httpx.AsyncClient(timeout=30) as client,
    ):
        started = time.monotonic()
        resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
        elapsed = time.monotonic() - started
        assert resp.status_code == 504, resp.text
        assert resp.json()["error"]["code"] == "upstream_timeout"
        assert elapsed < 4  # at first_byte (0.5 s), not when the token came (5 s)
