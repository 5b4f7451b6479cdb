"""Outcomes: `write_outcomes` answers with a future at once and writes the attempt, the state
it leads to, and the claim asked along with it; a retry is due at its time and not before."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tests.contract.build import NOW, attempt, claim, endpoints, event, settle
from tests.contract.conftest import Opener
from tillhook.errors import StoreUnavailable
from tillhook.models import DeliveryState
from tillhook.store.port import AttemptRow, ClaimRequest, LogFilter, Outbox


async def test_an_outcome_is_written_with_its_attempt(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id]), event("msg_2", [a.id]), event("msg_3", [a.id])])
    one, two, three = await claim(outbox, {a.id: 3})
    written = outbox.write_outcomes(
        [
            attempt(one, DeliveryState.DELIVERED, at=NOW + 1, status=200),
            attempt(two, DeliveryState.FAILED, at=NOW + 2, status=400),
            attempt(
                three, DeliveryState.PENDING, at=NOW + 3, status=None, error="connection refused", retry_at=NOW + 60
            ),
        ],
        NOW + 4,
    )
    assert isinstance(written, asyncio.Future)
    assert await written == []
    rows = {r.id: r for r in await outbox.list_deliveries(LogFilter())}
    expected = {
        one.id: (DeliveryState.DELIVERED, 1, 200, None, None, NOW + 1),
        two.id: (DeliveryState.FAILED, 1, 400, None, None, NOW + 2),
        three.id: (DeliveryState.PENDING, 1, None, "connection refused", NOW + 60, NOW + 3),
    }
    for delivery_id, (state, attempts, status, error, next_at, at) in expected.items():
        row = rows[delivery_id]
        assert (row.state, row.attempts, row.last_status, row.last_error, row.next_attempt_at) == (
            state,
            attempts,
            status,
            error,
            next_at,
        )
        assert row.last_attempt_at == at and row.first_attempt_at == at
    assert await outbox.attempts_of_delivery(one.id) == [
        AttemptRow(
            started_at=NOW + 1,
            duration_ms=40.0,
            status=200,
            error=None,
            response_excerpt="answered 200",
            outcome="delivered",
            body_sent=None,
        )
    ]
    (refused,) = await outbox.attempts_of_delivery(three.id)
    assert (refused.status, refused.error, refused.outcome, refused.response_excerpt) == (
        None,
        "connection refused",
        "retry",
        None,
    )


async def test_every_attempt_is_kept_oldest_first(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id])])
    (delivery,) = await claim(outbox, {a.id: 1})
    await settle(outbox, attempt(delivery, DeliveryState.PENDING, at=NOW, status=502, retry_at=NOW + 10))
    (delivery,) = await claim(outbox, {a.id: 1}, now=NOW + 10)
    assert (delivery.attempts, delivery.first_attempt_at) == (1, NOW)
    await settle(outbox, attempt(delivery, DeliveryState.PENDING, at=NOW + 10, status=503, retry_at=NOW + 70))
    (delivery,) = await claim(outbox, {a.id: 1}, now=NOW + 70)
    assert (delivery.attempts, delivery.first_attempt_at) == (2, NOW)
    shaped = b'{"text":"order paid"}'
    await settle(outbox, attempt(delivery, DeliveryState.DELIVERED, at=NOW + 70, body_sent=shaped))
    attempts = await outbox.attempts_of_delivery(delivery.id)
    assert [(x.started_at, x.status, x.outcome) for x in attempts] == [
        (NOW, 502, "retry"),
        (NOW + 10, 503, "retry"),
        (NOW + 70, 200, "delivered"),
    ]
    assert [x.body_sent for x in attempts] == [None, None, shaped]
    row = await outbox.get_delivery(delivery.id)
    assert (row.state, row.attempts, row.first_attempt_at, row.last_attempt_at, row.last_status) == (
        DeliveryState.DELIVERED,
        3,
        NOW,
        NOW + 70,
        200,
    )


async def test_a_retry_is_due_at_its_time_and_not_before(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id])])
    (delivery,) = await claim(outbox, {a.id: 1})
    await settle(outbox, attempt(delivery, DeliveryState.PENDING, status=500, retry_at=NOW + 60))
    assert await claim(outbox, {a.id: 1}, now=NOW) == []
    assert await claim(outbox, {a.id: 1}, now=NOW + 59.999) == []
    (again,) = await claim(outbox, {a.id: 1}, now=NOW + 60)
    assert (again.id, again.attempts, again.first_attempt_at) == (delivery.id, 1, NOW)


async def test_the_future_is_done_once_written_without_being_awaited(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id])])
    (delivery,) = await claim(outbox, {a.id: 1})
    told = asyncio.Event()
    results: list[object] = []

    def done(future: asyncio.Future[list[object]]) -> None:
        results.append(future.result())
        told.set()

    written = outbox.write_outcomes([attempt(delivery, DeliveryState.DELIVERED)], NOW)
    written.add_done_callback(done)  # type: ignore[arg-type]
    await asyncio.wait_for(told.wait(), 10)
    assert results == [[]]
    assert (await outbox.get_delivery(delivery.id)).state is DeliveryState.DELIVERED


async def test_outcomes_nobody_awaits_are_written_by_close(outbox: Outbox, opened: Opener) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id]), event("msg_2", [a.id])])
    one, two = await claim(outbox, {a.id: 2})
    outbox.write_outcomes([attempt(one, DeliveryState.DELIVERED)], NOW)
    outbox.write_outcomes([attempt(two, DeliveryState.FAILED, status=422)], NOW)
    await outbox.close()
    again = await opened()
    assert (await again.get_delivery(one.id)).state is DeliveryState.DELIVERED
    assert (await again.get_delivery(two.id)).state is DeliveryState.FAILED
    assert await again.count_by_state() == {DeliveryState.DELIVERED: 1, DeliveryState.FAILED: 1}


async def test_then_claim_claims_the_next_deliveries_in_the_same_write(outbox: Outbox) -> None:
    a, b = await endpoints(outbox, "a", "b")
    await outbox.enqueue([event(f"msg_{i}", [a.id, b.id], at=NOW - 100 + i) for i in range(4)])
    (first,) = await claim(outbox, {a.id: 1})
    transactions, _ = outbox.commit_stats
    claimed = await outbox.write_outcomes([attempt(first, DeliveryState.DELIVERED)], NOW, ClaimRequest({a.id: 2}, NOW))
    assert outbox.commit_stats[0] == transactions + 1  # the outcome and the claim: one transaction
    assert [(d.endpoint_id, d.event_id) for d in claimed] == [(a.id, "msg_1"), (a.id, "msg_2")]
    for delivery in claimed:
        assert (await outbox.get_delivery(delivery.id)).state is DeliveryState.DELIVERING
    assert (await outbox.get_delivery(first.id)).state is DeliveryState.DELIVERED
    # The claim kept to its quota and its endpoint: what is left is still there for others.
    rest = await claim(outbox, {a.id: 10, b.id: 10})
    assert sorted((d.endpoint_id, d.event_id) for d in rest) == sorted(
        [(a.id, "msg_3")] + [(b.id, f"msg_{i}") for i in range(4)]
    )


async def test_then_claim_of_an_ordered_endpoint_takes_only_its_next_head(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a", ordered=True)
    await outbox.enqueue([event(f"msg_{i}", [a.id], at=NOW - 100 + i) for i in range(3)])
    (head,) = await claim(outbox, {a.id: 1}, ordered=[a.id])
    claimed = await outbox.write_outcomes(
        [attempt(head, DeliveryState.DELIVERED)], NOW, ClaimRequest({a.id: 3}, NOW, frozenset({a.id}))
    )
    assert [d.event_id for d in claimed] == ["msg_1"]


async def test_an_outcome_does_not_bring_back_a_delivery_cancelled_meanwhile(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id])])
    (delivery,) = await claim(outbox, {a.id: 1})
    assert await outbox.delete_endpoint(a.id, NOW) == 1
    await settle(outbox, attempt(delivery, DeliveryState.PENDING, status=500, retry_at=NOW + 10))
    assert (await outbox.get_delivery(delivery.id)).state is DeliveryState.CANCELLED
    assert await claim(outbox, {a.id: 1}, now=NOW + 10) == []


async def test_a_gone_receiver_disables_its_endpoint_and_holds_the_rest(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id]), event("msg_2", [a.id])])
    (delivery,) = await claim(outbox, {a.id: 1})
    reason = "the receiver answered 410 Gone at attempt 1"
    await settle(
        outbox,
        attempt(delivery, DeliveryState.PENDING, status=410, outcome="gone", retry_at=NOW + 60, disable=reason),
    )
    (stored,) = await outbox.list_endpoints()
    assert (stored.enabled, stored.disabled_reason) == (False, reason)
    assert await outbox.count_by_state() == {DeliveryState.PENDING: 2}
    assert (await outbox.get_delivery(delivery.id)).endpoint_disabled_reason == reason


async def test_a_recovery_releases_the_backlog_waiting_beyond_it(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event(f"msg_{i}", [a.id], at=NOW - 100 + i) for i in range(3)])
    one, two, three = await claim(outbox, {a.id: 3})
    await settle(
        outbox,
        attempt(one, DeliveryState.PENDING, status=503, retry_at=NOW + 600),
        attempt(two, DeliveryState.PENDING, status=503, retry_at=NOW + 5),
    )
    await settle(outbox, attempt(three, DeliveryState.DELIVERED, at=NOW + 1, release_at=NOW + 2), now=NOW + 2)
    assert (await outbox.get_delivery(one.id)).next_attempt_at == NOW + 2
    assert (await outbox.get_delivery(two.id)).next_attempt_at == NOW + 2
    assert sorted(d.id for d in await claim(outbox, {a.id: 3}, now=NOW + 2)) == [one.id, two.id]


async def test_a_closed_outbox_refuses_outcomes_as_unavailable(outbox: Outbox) -> None:
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id])])
    (delivery,) = await claim(outbox, {a.id: 1})
    await outbox.close()
    with pytest.raises(StoreUnavailable):
        await outbox.write_outcomes([attempt(delivery, DeliveryState.DELIVERED)], NOW)


async def test_what_a_receiver_answered_is_kept_whatever_bytes_it_held(outbox: Outbox) -> None:
    """A receiver's answer may hold a NUL (a binary body): its outcome is written all the same,
    and written alone, never taking other writes of the same transaction down with it."""
    (a,) = await endpoints(outbox, "a")
    await outbox.enqueue([event("msg_1", [a.id])])
    (one,) = await claim(outbox, {a.id: 1})
    record = attempt(one, DeliveryState.PENDING, status=None, error="bad\x00gateway", retry_at=NOW + 60)
    record = replace(record, result=replace(record.result, response_excerpt="PNG\x00\x01"))
    beside = outbox.enqueue([event("msg_2", [a.id])])
    assert await outbox.write_outcomes([record], NOW + 1) == []
    assert (await beside).accepted[0].id == "msg_2"
    (kept,) = await outbox.attempts_of_delivery(one.id)
    assert kept.response_excerpt is not None and kept.error is not None
    assert kept.response_excerpt.startswith("PNG") and len(kept.response_excerpt) == 5
    assert kept.error.startswith("bad") and kept.error.endswith("gateway")
