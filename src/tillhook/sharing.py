"""An outbox shared with other daemons: which daemon this is and which one serves an endpoint
(`Sharing`, for the status), and what a daemon does with the others' news (store/port.py
`News`): wake the dispatcher for deliveries another daemon made due, and read the endpoints
again when another daemon changed them, so that every daemon fans events out to the same
endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from tillhook.dispatcher import Dispatcher
from tillhook.errors import StoreUnavailable
from tillhook.gates import EndpointGates
from tillhook.registry import EndpointRegistry
from tillhook.store.port import Due, News, Outbox

log = structlog.get_logger("tillhook")

RELOAD_RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class Sharing:
    """This daemon among those sharing the outbox: its id (its row in `Outbox.daemons`), and
    `served_by(endpoint id)`, the id of the daemon that claims, attempts, backs off and
    alerts for that endpoint."""

    daemon_id: str
    served_by: Callable[[str], str]

    def serves(self, endpoint_id: str) -> bool:
        return self.served_by(endpoint_id) == self.daemon_id


class SharedNews:
    def __init__(self, outbox: Outbox, registry: EndpointRegistry, dispatcher: Dispatcher, gates: EndpointGates):
        self._outbox = outbox
        self._registry = registry
        self._dispatcher = dispatcher
        self._gates = gates
        self._reload: asyncio.Task[None] | None = None
        self._again = False  # news came while reading: read once more after

    def heard(self, news: News) -> None:
        if isinstance(news, Due):
            if news.endpoint_ids is None:
                self._forget_unserved()  # who serves what may have changed
            self._dispatcher.wake(news.endpoint_ids)
            return
        if self._reload is not None and not self._reload.done():
            self._again = True
            return
        self._reload = asyncio.create_task(self._read_endpoints(), name="tillhook-endpoints-reload")

    def _forget_unserved(self) -> None:
        """The health of endpoints another daemon serves now is that one's to know: kept here,
        it would show a back-off this daemon no longer follows, and come back stale."""
        for endpoint in self._registry.all():
            if not self._gates.serves(endpoint.id):
                self._gates.forget(endpoint.id)

    async def _read_endpoints(self) -> None:
        while True:
            self._again = False
            try:
                endpoints = await self._outbox.list_endpoints()
            except StoreUnavailable as exc:
                # Until it is read, this daemon fans events out to the endpoints it knew (the
                # outbox itself holds what is disabled or ordered): read it as soon as it can be.
                log.error("storage_unavailable", error=exc.message, at="endpoints-reload")
                await asyncio.sleep(RELOAD_RETRY_S)
                continue
            before = {e.id: e for e in self._registry.all()}
            self._registry.replace_all(endpoints)
            now = {e.id: e for e in endpoints}
            for endpoint_id in before.keys() - now.keys():
                self._gates.forget(endpoint_id)
            for endpoint_id, endpoint in now.items():
                was = before.get(endpoint_id)
                if endpoint.enabled and (was is None or not was.enabled):
                    self._gates.forget(endpoint_id)  # enabled again elsewhere: a fresh start
            changed = [i for i, e in now.items() if before.get(i) != e]
            if changed:
                self._dispatcher.wake(changed)
            if not self._again:
                return

    async def close(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)
