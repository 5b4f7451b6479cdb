"""The outbox's own life: opened and closed (twice is fine), its writer, its tokens made once
and kept, its size, a backup taken while it is in use, and writes refused once closed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.contract.build import NOW, claim, endpoints, event
from tests.contract.conftest import Opener, Place
from tillhook.errors import NoDatabase, StoreError, StoreUnavailable
from tillhook.models import DeliveryState
from tillhook.store.port import LogFilter, Outbox, Tokens

TOKEN_KEYS = {"ingest_token", "admin_token", "viewer_token"}


async def test_the_writer_runs_until_close(outbox: Outbox) -> None:
    writer = outbox.writer
    assert isinstance(writer, asyncio.Task) and not writer.done()
    await outbox.check_writable()
    await outbox.close()
    assert outbox.writer is None or outbox.writer.done()
    assert writer.done() and not writer.cancelled() and writer.exception() is None
    await outbox.close()  # twice is fine


async def test_what_is_no_outbox_is_refused_at_open_saying_so(place: Place) -> None:
    await place.spoil()
    outbox = place.new()
    with pytest.raises(StoreError) as refused:
        await outbox.open()
    assert str(refused.value)  # a message for the operator, not a driver's exception
    await outbox.close()


async def test_a_closed_outbox_refuses_writes_as_unavailable(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    await outbox.close()
    with pytest.raises(StoreUnavailable):
        await outbox.check_writable()
    with pytest.raises(StoreUnavailable):
        await outbox.enqueue([event("msg_1", [shop.id])])
    with pytest.raises(StoreUnavailable):
        await claim(outbox, {shop.id: 1})


async def test_tokens_are_made_once_and_kept(outbox: Outbox, opened: Opener, place: Place) -> None:
    made = await outbox.tokens(None, None, None)
    assert isinstance(made, Tokens)
    assert len({made.ingest, made.admin, made.viewer}) == 3
    assert all(len(token) >= 32 for token in (made.ingest, made.admin, made.viewer))
    assert await outbox.tokens(None, None, None) == made
    # Tokens given (by the config file) win, and are not kept in place of the made ones.
    given = await outbox.tokens("ingest-given", None, "viewer-given")
    assert given == Tokens(ingest="ingest-given", admin=made.admin, viewer="viewer-given")
    kept = {"ingest_token": made.ingest, "admin_token": made.admin, "viewer_token": made.viewer}
    assert await place.new().read_tokens() == kept  # read beside the daemon, without opening
    await outbox.close()
    again = await opened()
    assert await again.tokens(None, None, None) == made


async def test_tokens_are_read_without_making_any(place: Place, opened: Opener) -> None:
    with pytest.raises(NoDatabase):
        await place.new().read_tokens()
    outbox = await opened()
    assert set(await place.new().read_tokens()) <= TOKEN_KEYS  # none made until asked for
    await outbox.tokens(None, None, None)
    assert set(await place.new().read_tokens()) == TOKEN_KEYS


async def test_the_size_grows_with_what_is_stored(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    empty = await outbox.size_bytes()
    assert empty > 0
    # Data that does not compress, as a database may compress what it stores.
    lines = [random.Random(i).randbytes(2000).hex() for i in range(200)]
    await outbox.enqueue([event(f"msg_{i}", [shop.id], data={"lines": lines[i]}) for i in range(200)], batch=True)
    assert await outbox.size_bytes() >= empty + 200 * 4000


async def test_a_backup_is_a_consistent_copy_taken_while_in_use(
    outbox: Outbox, opened: Opener, place: Place, tmp_path: Path
) -> None:
    shop, stock = await endpoints(outbox, "shop", "stock")
    sent = [event(f"msg_{i}", [shop.id, stock.id], at=NOW - 100 + i) for i in range(3)]
    await outbox.enqueue(sent)
    await claim(outbox, {shop.id: 1})
    target = tmp_path / "copy" / "outbox-backup"
    target.parent.mkdir()
    if place.from_copy is None:  # the database's own tools take copies: the refusal names them
        with pytest.raises(StoreError) as refused:
            await place.new().backup(target)
        assert str(refused.value) and not target.exists()
        return
    assert await place.new().backup(target) == 3  # needs no open: the daemon holds the outbox
    with pytest.raises(StoreError):
        await place.new().backup(target)  # never over an existing file
    await outbox.enqueue([event("msg_late", [shop.id])])  # after the copy: not in it
    copy = await opened(place.from_copy(target))
    assert [e.id for e in await copy.list_events(LogFilter())] == ["msg_2", "msg_1", "msg_0"]
    assert (await copy.get_event("msg_1")).body == sent[1].body
    assert [e.name for e in await copy.list_endpoints()] == ["shop", "stock"]
    assert await copy.count_by_state() == {DeliveryState.PENDING: 5, DeliveryState.DELIVERING: 1}


async def test_the_location_names_the_outbox_the_same_each_time(outbox: Outbox, place: Place) -> None:
    assert isinstance(outbox.location, str) and outbox.location
    assert place.new().location == outbox.location


async def test_commit_stats_count_what_was_written(outbox: Outbox) -> None:
    (shop,) = await endpoints(outbox, "shop")
    transactions, ops = outbox.commit_stats
    await outbox.enqueue([event("msg_1", [shop.id])])
    await outbox.enqueue([event("msg_2", [shop.id])])
    after = outbox.commit_stats
    assert after[0] > transactions and after[1] >= ops + 2
