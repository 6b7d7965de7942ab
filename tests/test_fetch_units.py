"""The fetch module's pure parts: Retry-After, per-host spacing and the address guard."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import time

import pytest

from crawler.errors import Blocked
from crawler.fetch import AddressGuard, retry_after_s
from crawler.politeness import HostSlot
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


# --- the pace rule (politeness' docstring) ---------------------------------------------------


def test_host_level_answers_double_the_pace_once_per_url_up_to_the_cap() -> None:
    slot = HostSlot(concurrency=2, delay=0.0, backoff=1.0, cap=8.0)
    paces = []
    for i in range(6):
        slot.answered(f"/u{i}", 503 if i % 2 else 429, 0.01)
        paces.append(slot.spacing())
    assert paces == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    slot.answered("/u0", 429, 0.01)  # the same URL again (its retry) does not double it
    assert slot.spacing() == 8.0


def test_one_url_retried_doubles_the_pace_once() -> None:
    slot = HostSlot(concurrency=2, delay=0.0, backoff=0.5, cap=60.0)
    for _ in range(5):
        slot.answered("/busy", 503, 0.01)
    assert slot.spacing() == 0.5


def test_urls_failing_on_their_own_leave_the_pace_alone() -> None:
    slot = HostSlot(concurrency=2, delay=0.1, backoff=0.5, cap=60.0)
    for i in range(50):
        slot.answered(f"/broken/{i}", 500, 0.01)
    assert slot.spacing() == 0.1
    assert slot.ready_at() == 0.0, "no start deferred"


def test_healthy_answers_bring_the_pace_back_to_the_delay() -> None:
    slot = HostSlot(concurrency=2, delay=0.1, backoff=1.0, cap=60.0)
    for i in range(4):
        slot.unreachable() if i % 2 else slot.answered(f"/{i}", 502, 0.01)
    assert slot.spacing() == 8.0
    paces = []
    for i in range(12):
        slot.answered(f"/ok/{i}", 200, 0.01)
        paces.append(slot.spacing())
    assert paces[0] == pytest.approx(4.05), "half-way back at each healthy answer"
    assert paces == sorted(paces, reverse=True) and paces[-1] == pytest.approx(0.1, abs=0.01)


def test_throttle_follows_latency_over_target_within_delay_and_cap() -> None:
    slot = HostSlot(concurrency=8, delay=0.05, cap=2.0, throttle=True, target=2.0)
    slot.answered("/a", 200, 0.6)
    assert slot.spacing() == pytest.approx(0.3), "the first answer sets it at once"
    slot.answered("/b", 200, 100.0)
    assert slot.spacing() == 2.0, "never above the cap"
    fast = HostSlot(concurrency=8, delay=0.05, cap=2.0, throttle=True, target=1.0)
    fast.answered("/a", 200, 0.001)
    assert fast.spacing() == 0.05, "never below the delay"


def test_without_throttle_latency_is_ignored() -> None:
    slot = HostSlot(concurrency=8, delay=0.0, cap=60.0)
    slot.answered("/slow", 200, 5.0)
    assert slot.spacing() == 0.0


def test_throttle_doubles_its_pace_on_429_and_503() -> None:
    slot = HostSlot(concurrency=8, delay=0.0, backoff=0.1, cap=60.0, throttle=True)
    slot.answered("/a", 200, 0.4)
    slot.answered("/b", 429, 0.01)
    assert slot.spacing() == pytest.approx(0.8)
    slot.answered("/c", 503, 0.01)
    assert slot.spacing() == pytest.approx(1.6)


async def test_slowing_moves_the_next_start_out_at_once() -> None:
    slot = HostSlot(concurrency=2, delay=0.0, backoff=2.0, cap=8.0)
    async with slot:
        pass
    slot.unreachable()
    assert slot.ready_at() > time.monotonic() + 1.5


async def test_a_resting_url_holds_none_of_the_hosts_places() -> None:
    slot = HostSlot(concurrency=1, delay=0.0)
    slot.claimed = 1
    assert not slot.may_start(time.monotonic())
    rest = asyncio.create_task(slot.rest(0.2))
    await asyncio.sleep(0.05)
    assert slot.may_start(time.monotonic()), "the host takes another URL meanwhile"
    await rest
    assert not slot.may_start(time.monotonic())


def test_the_pace_survives_a_very_long_run_of_failures() -> None:
    slot = HostSlot(concurrency=1, delay=0.0, backoff=0.5, cap=60.0)
    for _ in range(10_000):
        slot.unreachable()
    assert slot.spacing() == 60.0
