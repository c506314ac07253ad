"""The stream's one timer: how far ``_Relay`` moves it before a read and before a write.

``relay_stream`` covers the upstream's silence (``idle``) and the client's writes (``client_write``)
with one ``asyncio.Timeout``, moved only when less than the window is left (docs in ``relay.py``).
When it fires late by a fraction of ``idle``, no end-to-end test on a shared machine can tell; here
the arithmetic is checked exactly: a real timer, due far ahead so it never fires, and the loop
times the relay is told it is (``now``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator

from inferstack.exchange import Exchange, Responder
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.relay.relay import _checks, _Relay
from inferstack.types import Message

IDLE, WRITE = 10.0, 4.0


@contextlib.asynccontextmanager
async def relay_timer(
    due: float, total: float = 100.0, client_write: float = WRITE
) -> AsyncIterator[tuple[_Relay, float]]:
    """A relay whose timer is due at ``t + due``, its total deadline at ``t + total``; yields (relay, t)."""
    loop = asyncio.get_running_loop()
    t = loop.time() + 1000  # the loop never reaches these times during the test

    async def send(message: Message) -> None:
        raise AssertionError("nothing is written here")

    ex = Exchange(request_id="r", upstream_id="u", endpoint="chat", started=time.perf_counter(), model="m")
    r = _Relay(ex, Responder(send), GatewayMetrics(), loop, IDLE, client_write, t + total)
    async with asyncio.timeout_at(t + due) as r.timer:
        yield r, t


def due(r: _Relay, t: float) -> float | None:
    assert r.timer is not None
    when = r.timer.when()
    return None if when is None else round(when - t, 6)


async def test_before_a_read_less_than_idle_left_moves_the_timer_to_one_and_a_half_idle() -> None:
    async with relay_timer(due=3) as (r, t):
        r.after_read(t)
        assert due(r, t) == 15
        # Not again until less than idle is left: the next reads cost one comparison each.
        assert (r.read_check - t, r.write_check - t) == (5, 11)
        r.after_read(t + 4.9)
        assert due(r, t) == 15
        r.after_read(t + 5.5)
        assert due(r, t) == 20.5


async def test_before_a_read_idle_or_more_left_leaves_the_timer() -> None:
    for left in (IDLE, 12, 1.5 * IDLE):
        async with relay_timer(due=left) as (r, t):
            r.after_read(t)
            assert due(r, t) == left
            assert r.read_check - t == left - IDLE


async def test_before_a_read_a_timer_moved_past_the_read_window_is_brought_back() -> None:
    # A write moved it far (client_write > 1.5 x idle): the upstream's silence is still cut after idle.
    async with relay_timer(due=30) as (r, t):
        r.after_read(t)
        assert due(r, t) == 15


async def test_the_timer_never_moves_past_the_total_deadline() -> None:
    async with relay_timer(due=3, total=12) as (r, t):
        r.after_read(t)
        assert due(r, t) == 12
        # At the total: nothing to move before a read any more, and a write moves it only if it must.
        assert (r.read_check, r.write_check - t) == (math.inf, 8)
        r.after_read(t + 11)
        assert due(r, t) == 12
    async with relay_timer(due=9, total=12) as (r, t):
        r.after_read(t)  # less than idle left, and the total comes first
        assert due(r, t) == 12
    async with relay_timer(due=12, total=12) as (r, t):
        r.after_read(t + 5)  # less than idle left, but it is the total
        assert due(r, t) == 12 and r.read_check == math.inf


async def test_before_a_write_less_than_client_write_left_moves_the_timer_to_client_write() -> None:
    async with relay_timer(due=3) as (r, t):
        r.before_write(t)
        assert due(r, t) == WRITE
        # Less than idle is left now: the next read moves it on.
        assert (r.write_check - t, r.read_check - t) == (0, WRITE - IDLE)
        r.after_read(t + 1)
        assert due(r, t) == 16


async def test_before_a_write_client_write_or_more_left_leaves_the_timer() -> None:
    for left in (WRITE, 6):
        async with relay_timer(due=left) as (r, t):
            r.before_write(t)
            assert due(r, t) == left
            assert r.write_check - t == left - WRITE
    async with relay_timer(due=8) as (r, t):
        r.after_read(t)  # moved to t + 15; the next write check at t + 11
        r.before_write(t + 10.9)
        assert due(r, t) == 15


async def test_a_write_that_moves_the_timer_past_the_read_window_makes_the_next_read_bring_it_back() -> None:
    async with relay_timer(due=3, client_write=20) as (r, t):
        r.before_write(t)
        assert due(r, t) == 20
        assert r.read_check == -math.inf
        r.after_read(t + 1)
        assert due(r, t) == 16


def test_checks_are_the_times_past_which_the_timer_must_move() -> None:
    # (when, now) -> (write_check, read_check), with idle 10, client_write 4, the total at 100.
    assert _checks(15, 0, IDLE, WRITE, 100) == (11, 5)
    assert _checks(15.5, 0, IDLE, WRITE, 100) == (11.5, -math.inf)  # past the read window
    assert _checks(100, 90, IDLE, WRITE, 100) == (96, math.inf)  # at the total
    assert _checks(96, 90, IDLE, WRITE, 100) == (92, 86)
