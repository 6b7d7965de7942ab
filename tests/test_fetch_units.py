"""The fetch module's pure parts: Retry-After, per-host spacing and the address guard."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import time

import pytest

from crawler.errors import Blocked
from crawler.fetch import AddressGuard, retry_after_s
from crawler.politeness import BREAKER_THRESHOLD, HostSlot
from crawler.urls import LinkPolicy, address_class

# asyncio's clock and time.monotonic agree, but a wake-up may be reported a hair early
TOLERANCE = 0.02

# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("0", 0.0)])
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert retry_after_s(value, time.time()) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    now = time.time()
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_s(header, now) == pytest.approx(30, abs=1.01)


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    now = time.time()
    assert retry_after_s(email.utils.formatdate(now - 3600, usegmt=True), now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2020",
                                   "12abc"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert retry_after_s(value, time.time()) is None


# --- HostSlot -----------------------------------------------------------------------------


async def _enter_and_note(slot: HostSlot, starts: list[float], hold: float = 0.0) -> None:
    async with slot:
        starts.append(time.monotonic())
        await asyncio.sleep(hold)


async def test_slot_spaces_request_starts_by_its_delay() -> None:
    slot = HostSlot(concurrency=8, delay=0.2)
    starts: list[float] = []
    await asyncio.gather(*(_enter_and_note(slot, starts) for _ in range(3)))
    starts.sort()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.2 - TOLERANCE for gap in gaps), gaps


async def test_slot_without_delay_does_not_wait() -> None:
    slot = HostSlot(concurrency=8, delay=0.0)
    begin = time.monotonic()
    starts: list[float] = []
    await asyncio.gather(*(_enter_and_note(slot, starts) for _ in range(5)))
    assert len(starts) == 5
    assert time.monotonic() - begin < 1.0  # nothing near a delay's worth of waiting


async def test_defer_pushes_the_next_start() -> None:
    slot = HostSlot(concurrency=2, delay=0.0)
    deferred_at = time.monotonic()
    slot.defer(0.3)
    assert slot.ready_at() >= deferred_at + 0.3
    starts: list[float] = []
    await _enter_and_note(slot, starts)
    assert starts[0] - deferred_at >= 0.3 - TOLERANCE


async def test_defer_never_pulls_the_next_start_earlier() -> None:
    slot = HostSlot(concurrency=2, delay=0.0)
    slot.defer(0.3)
    later = slot.ready_at()
    slot.defer(0.01)
    assert slot.ready_at() == later


async def test_defer_while_waiting_pushes_a_waiter_further() -> None:
    slot = HostSlot(concurrency=2, delay=0.0)
    begin = time.monotonic()
    slot.defer(0.1)
    starts: list[float] = []
    waiter = asyncio.ensure_future(_enter_and_note(slot, starts))
    await asyncio.sleep(0.02)
    slot.defer(0.3)  # a Retry-After arrives while the waiter sleeps
    await waiter
    assert starts[0] - begin >= 0.32 - TOLERANCE


async def test_slot_respects_its_concurrency_limit() -> None:
    slot = HostSlot(concurrency=2, delay=0.0)
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with slot:
            peak = max(peak, slot.active)
            assert slot.active <= 2
            await asyncio.sleep(0.05)

    await asyncio.gather(*(one() for _ in range(6)))
    assert peak == 2
    assert slot.active == 0
    assert not slot.full


async def test_slot_is_full_at_its_limit() -> None:
    slot = HostSlot(concurrency=1, delay=0.0)
    async with slot:
        assert slot.full
    assert not slot.full


async def test_cancelled_waiter_gives_its_place_back() -> None:
    slot = HostSlot(concurrency=1, delay=0.0)
    slot.defer(10)
    waiter = asyncio.ensure_future(_enter_and_note(slot, []))
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slot.active == 0
    assert not slot.full


# --- AddressGuard -------------------------------------------------------------------------


def _loopback_only() -> LinkPolicy:
    return LinkPolicy(scope="any", seed_hosts=frozenset(), seed_domains=frozenset(),
                      private_allowed=frozenset({"loopback"}))


@pytest.mark.parametrize("host", ["169.254.169.254", "10.0.0.1", "192.168.1.1", "[fd00::1]"])
async def test_guard_refuses_private_literals(host: str) -> None:
    guard = AddressGuard(_loopback_only())
    try:
        with pytest.raises(Blocked) as info:
            await guard.check(host, 80)
        assert host.strip("[]") in str(info.value)
    finally:
        await guard.close()


async def test_guard_accepts_an_allowed_literal() -> None:
    guard = AddressGuard(_loopback_only())
    try:
        await guard.check("127.0.0.1", 80)
        await guard.check("[::1]", 80)
    finally:
        await guard.close()


async def test_guard_refuses_loopback_when_the_policy_does() -> None:
    policy = LinkPolicy(scope="any", seed_hosts=frozenset(), seed_domains=frozenset())
    guard = AddressGuard(policy)
    try:
        with pytest.raises(Blocked, match="loopback"):
            await guard.check("127.0.0.1", 80)
        with pytest.raises(Blocked, match="loopback"):
            await guard.resolve("localhost", 80)
    finally:
        await guard.close()


async def test_guard_resolves_localhost_to_loopback() -> None:
    guard = AddressGuard(_loopback_only())
    try:
        await guard.check("localhost", 0)
        answers = await guard.resolve("localhost", 80)
        assert answers
        assert {address_class(a["host"]) for a in answers} == {"loopback"}
        assert await guard.resolve("localhost", 80) is answers  # cached for the run
    finally:
        await guard.close()


# --- the circuit breaker --------------------------------------------------------------------


def test_breaker_stays_closed_below_its_threshold() -> None:
    slot = HostSlot(concurrency=2, delay=0.1, pause=1.0, max_pause=8.0)
    for _ in range(BREAKER_THRESHOLD - 1):
        slot.failed()
    assert slot.spacing() == 0.1
    assert slot.ready_at() == 0.0, "no start deferred yet"


def test_breaker_pause_doubles_up_to_its_cap_and_one_success_closes_it() -> None:
    slot = HostSlot(concurrency=2, delay=0.0, pause=1.0, max_pause=8.0)
    pauses = []
    for _ in range(BREAKER_THRESHOLD + 5):
        slot.failed()
        pauses.append(slot.spacing())
    assert pauses[BREAKER_THRESHOLD - 1:] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert slot.ready_at() > time.monotonic() + 7, "the open breaker defers the next start"
    slot.succeeded()
    assert slot.spacing() == 0.0


def test_breaker_never_shortens_the_delay() -> None:
    slot = HostSlot(concurrency=2, delay=5.0, pause=0.5, max_pause=60.0)
    for _ in range(BREAKER_THRESHOLD):
        slot.failed()
    assert slot.spacing() == 5.0


def test_breaker_survives_a_very_long_run_of_failures() -> None:
    slot = HostSlot(concurrency=1, delay=0.0, pause=0.5, max_pause=60.0)
    for _ in range(10_000):
        slot.failed()
    assert slot.spacing() == 60.0
