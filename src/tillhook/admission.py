"""Storing fresh events, the one way every caller does it (the ingest API, a test event, an
alert): deliveries whose endpoint has a free slot now are stored `delivering` and start at
their commit, without a claim of their own."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from tillhook.dispatcher import Dispatcher
from tillhook.models import AcceptedEvent, NewEvent
from tillhook.store.port import Enqueued


async def enqueue(dispatcher: Dispatcher, events: Sequence[NewEvent], *, batch: bool = False) -> list[AcceptedEvent]:
    """Store `events` durably and return what the POS is answered. Raises what the store
    raises (StoreUnavailable, InvalidInput), every slot taken for them given back."""
    gates, now = dispatcher.gates, dispatcher.clock.now()
    start: list[list[bool]] = []
    reserved: list[str] = []  # an endpoint id per slot taken
    try:
        for event in events:
            flags = []
            for endpoint_id in event.endpoint_ids:
                endpoint = dispatcher.admits(endpoint_id)
                taken = endpoint is not None and gates.acquire(endpoint, 1, now) == 1
                if taken:
                    reserved.append(endpoint_id)
                flags.append(taken)
            start.append(flags)
        stored = dispatcher.outbox.enqueue(events, start if reserved else None, batch=batch)
    except BaseException:
        _give_back(dispatcher, reserved)
        raise
    if not reserved:
        # Nothing was started, so no slot can be stranded: this caller waits on the store's
        # own future and settles itself. Gone meanwhile, it cancels only its wait; the write
        # goes on and its endpoints are woken (a claim that comes before the write leaves
        # what it missed to the next tick).
        try:
            enqueued = await stored
        except asyncio.CancelledError:
            dispatcher.wake({endpoint_id for event in events for endpoint_id in event.endpoint_ids})
            raise
        if enqueued.queued:
            dispatcher.wake(enqueued.queued)
        return enqueued.accepted
    # Settled by the store's answer itself, not by this caller, who waits on a future of its
    # own: one gone meanwhile (the client hung up) cancels neither the write nor the settling,
    # so it strands no slot and leaves no delivery `delivering` unstarted.
    answered = asyncio.get_running_loop().create_future()
    stored.add_done_callback(functools.partial(_settle, dispatcher, reserved, answered))
    await answered
    return stored.result().accepted


def _settle(
    dispatcher: Dispatcher, reserved: list[str], answered: asyncio.Future[None], stored: asyncio.Future[Enqueued]
) -> None:
    if not answered.done():
        answered.set_result(None)
    if stored.cancelled() or stored.exception() is not None:
        _give_back(dispatcher, reserved)
        return
    enqueued = stored.result()
    _give_back(dispatcher, enqueued.not_started)
    dispatcher.start_admitted(enqueued.started)
    if enqueued.queued:
        dispatcher.wake(enqueued.queued)


def _give_back(dispatcher: Dispatcher, endpoint_ids: list[str]) -> None:
    for endpoint_id in endpoint_ids:
        dispatcher.gates.release(endpoint_id, refund_tokens=True)  # nothing was sent for it
