"""The admission queue on its own (no server, no TensorFlow): EAS's 450/408/429 rules."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Callable, List, Tuple

import pytest

from tfserverless.config import Config
from tfserverless.errors import ClientGone, ConfigError, QueueFull, RequestTimeout, TooManyRequests
from tfserverless.serving.admission import Admission, Limits, limits_for

from ..waiting import Clock, until


def in_thread(fn: Callable[[], None]) -> Tuple[threading.Thread, List[BaseException]]:
    """``fn`` in a thread of its own; what it raised lands in the list."""
    raised: List[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # handed to the test
            raised.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, raised


def test_full_queue_is_450_at_once_naming_the_knobs() -> None:
    adm = Admission(Limits(workers=1, queue_size=0, keepalive=5))
    adm.acquire(adm.deadline())
    # no deadline at all: a request that queued would wait for ever; a full queue never waits
    t, raised = in_thread(lambda: adm.acquire(float("inf")))
    t.join(10)
    assert not t.is_alive() and adm.waiting == 0, "the refused request waited"
    [e] = raised
    assert isinstance(e, QueueFull) and e.status == 450
    assert re.search(r"RPC_WORKER_THREADS=1.*RPC_MAX_QUEUE_SIZE=0", e.message), e.message
    assert e.headers["Retry-After"] == "1" and adm.shed == {450: 1, 408: 0, 429: 0}
    adm.release()
    adm.acquire(adm.deadline())  # the slot is free again


def test_slots_are_handed_over_in_arrival_order() -> None:
    adm = Admission(Limits(workers=1, queue_size=8, keepalive=10))
    adm.acquire(adm.deadline())
    order: List[int] = []
    threads = []
    for i in range(4):
        def wait(i: int = i) -> None:
            adm.acquire(adm.deadline())
            order.append(i)
            adm.release()
        t = threading.Thread(target=wait)
        t.start()
        threads.append(t)
        until(lambda i=i: adm.waiting == i + 1, f"{i + 1} queued")  # arrival order is this order
    assert adm.waiting == 4 and adm.running == 1
    adm.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3] and adm.running == 0 and adm.waiting == 0


def test_a_queued_request_past_its_deadline_is_408_and_leaves_the_queue() -> None:
    clock = Clock()
    adm = Admission(Limits(workers=1, queue_size=4, keepalive=0.1), clock=clock)
    adm.acquire(adm.deadline())
    deadline = adm.deadline()
    clock.now = deadline  # RPC_KEEPALIVE passed: it queues with nothing left to wait
    t, raised = in_thread(lambda: adm.acquire(deadline))
    t.join(10)
    assert not t.is_alive(), "it kept waiting past its deadline"
    [e] = raised
    assert isinstance(e, RequestTimeout) and "RPC_KEEPALIVE=100 ms" in e.message
    assert e.status == 408 and adm.shed[408] == 1
    assert adm.waiting == 0
    adm.release()
    assert adm.running == 0  # nobody was waiting: the slot is simply free


def test_a_queued_request_is_woken_by_its_own_deadline() -> None:
    """Nothing releases the slot: the waiter's own timeout ends its wait (real time, no bound
    on how long it took), and it leaves the queue."""
    adm = Admission(Limits(workers=1, queue_size=4, keepalive=0.05))
    adm.acquire(adm.deadline())
    t, raised = in_thread(lambda: adm.acquire(adm.deadline()))
    t.join(10)
    assert not t.is_alive() and [type(e) for e in raised] == [RequestTimeout]
    assert adm.waiting == 0 and adm.running == 1 and adm.shed[408] == 1


def test_a_slot_granted_after_the_deadline_goes_to_the_next_waiter() -> None:
    clock = Clock()
    adm = Admission(Limits(workers=1, queue_size=4, keepalive=60), clock=clock)
    adm.acquire(adm.deadline())
    late, late_raised = in_thread(lambda: adm.acquire(adm.deadline()))
    until(lambda: adm.waiting == 1, "the first waiter queued")
    got: List[str] = []
    patient, patient_raised = in_thread(lambda: (adm.acquire(float("inf")), got.append("slot")))
    until(lambda: adm.waiting == 2, "the second waiter queued")
    clock.now += 61  # the first waiter's deadline is long gone before the slot frees
    adm.release()
    late.join(10)
    patient.join(10)
    assert [type(e) for e in late_raised] == [RequestTimeout] and not patient_raised
    assert got == ["slot"] and adm.running == 1 and adm.waiting == 0 and adm.shed[408] == 1


def test_rate_limit_is_429() -> None:
    clock = Clock()
    adm = Admission(Limits(workers=100, queue_size=0, rate_limit=2), clock=clock)
    for _ in range(2):
        adm.acquire(float("inf"))
    with pytest.raises(TooManyRequests, match="RPC_RATE_LIMIT=2") as e:
        adm.acquire(float("inf"))
    assert e.value.status == 429
    clock.now += 0.5  # one token back
    adm.acquire(float("inf"))


def test_bytes_in_flight_are_bounded_but_one_body_always_passes() -> None:
    adm = Admission(Limits(inflight_bytes=100, peer_inflight_bytes=100))
    big = adm.held()
    adm.reserve_bytes(big, 300)
    adm.reserve_bytes(big, 200)  # alone: MAX_BODY_BYTES already bounds it, chunk after chunk
    other = adm.held()
    with pytest.raises(QueueFull, match="MAX_INFLIGHT_BYTES=100"):
        adm.reserve_bytes(other, 1)
    adm.release_bytes(big)
    assert adm.inflight == 0 and big.n == 0
    adm.reserve_bytes(big, 60)
    with pytest.raises(QueueFull):
        adm.reserve_bytes(other, 41)
    assert other.n == 0 and adm.inflight == 60  # a refused reservation holds nothing
    adm.reserve_bytes(other, 40)


def test_a_declared_length_costs_nothing_until_its_bytes_arrive() -> None:
    adm = Admission(Limits(inflight_bytes=100))
    stalled = [adm.held() for _ in range(8)]
    for h in stalled:  # each declares far more than the budget and sends nothing
        adm.reserve_bytes(h, 1 << 26, count=False)
    assert adm.inflight == 0
    ok = adm.held()
    adm.reserve_bytes(ok, 90)  # an honest body still gets in
    with pytest.raises(QueueFull):  # while a declared size that does not fit is refused at once
        adm.reserve_bytes(stalled[0], 11, count=False)
    assert adm.inflight == 90 and stalled[0].n == 0


def test_one_client_address_holds_at_most_its_share() -> None:
    adm = Admission(Limits(inflight_bytes=100, peer_inflight_bytes=50))
    a1, a2, b = adm.held("10.0.0.1"), adm.held("10.0.0.1"), adm.held("10.0.0.2")
    adm.reserve_bytes(a1, 70)  # its only body: passes (MAX_BODY_BYTES bounds it)
    with pytest.raises(QueueFull, match="MAX_INFLIGHT_BYTES_PER_CLIENT=50"):
        adm.reserve_bytes(a2, 1)
    adm.reserve_bytes(b, 30)  # another address is not held back by it
    adm.release_bytes(a1)
    adm.reserve_bytes(a2, 50)
    adm.release_bytes(a2)
    adm.release_bytes(b)
    assert adm.inflight == 0 and not adm._peers  # addresses that hold nothing are forgotten


async def until_async(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"never {what}"
        await asyncio.sleep(0.001)


def test_async_waiters_leave_when_the_client_goes() -> None:
    async def main() -> None:
        adm = Admission(Limits(workers=1, queue_size=4, keepalive=10))
        await adm.acquire_async(adm.deadline())
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = asyncio.ensure_future(adm.acquire_async(adm.deadline(), lambda: gone))
        await until_async(lambda: adm.waiting == 1, "it queued")
        gone.set_result(None)
        with pytest.raises(ClientGone):
            await waiter
        assert adm.waiting == 0
        other = asyncio.ensure_future(adm.acquire_async(adm.deadline()))
        await until_async(lambda: adm.waiting == 1, "the other queued")
        adm.release()  # handed to the live waiter, not the one that left
        await asyncio.wait_for(other, 1)
        assert adm.running == 1
        adm.release()
        assert adm.running == 0

    asyncio.run(main())


@pytest.mark.parametrize("key,value,msg", [
    ("RPC_WORKER_THREADS", "0", "RPC_WORKER_THREADS='0' is 0; expected 1 or more"),
    ("RPC_MAX_QUEUE_SIZE", "-1", "RPC_MAX_QUEUE_SIZE='-1' is negative"),
    ("RPC_KEEPALIVE", "soon", "RPC_KEEPALIVE='soon' is not an integer"),
    ("RPC_RATE_LIMIT", "fast", "RPC_RATE_LIMIT='fast' is not a number"),
    ("MAX_INFLIGHT_BYTES", "lots", "MAX_INFLIGHT_BYTES='lots' is not a size"),
    ("SIGNATURE_MAX_SKEW", "-5", "SIGNATURE_MAX_SKEW='-5' is negative"),
])
def test_bad_admission_settings_name_key_and_value(key: str, value: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        Config.from_environ({key: value})


def test_admission_defaults() -> None:
    lim = limits_for(Config.from_environ({"MAX_BODY_BYTES": "8MiB"}))
    assert (lim.workers, lim.queue_size, lim.keepalive, lim.rate_limit) == (5, 64, 60.0, 0.0)
    assert lim.inflight_bytes == 32 << 20


def test_one_client_address_may_hold_at_most_its_requests() -> None:
    adm = Admission(Limits(workers=1, queue_size=8, keepalive=10, peer_requests=2))
    adm.acquire(adm.deadline(), "10.0.0.1")  # running
    waiter = threading.Thread(target=adm.acquire, args=(adm.deadline(), "10.0.0.1"))
    waiter.start()
    until(lambda: adm.waiting == 1, "queued")
    with pytest.raises(QueueFull, match="MAX_REQUESTS_PER_CLIENT=2"):
        adm.acquire(adm.deadline(), "10.0.0.1")  # a third from the same address
    other = threading.Thread(target=adm.acquire, args=(adm.deadline(), "10.0.0.2"))
    other.start()  # another address still queues
    until(lambda: adm.waiting == 2, "the other address queued")
    adm.release("10.0.0.1")  # the first ends: the queued one of 10.0.0.1 runs
    waiter.join(5)
    adm.release("10.0.0.1")
    other.join(5)
    adm.release("10.0.0.2")
    assert adm.running == 0 and not adm._peer_requests  # everything given back
