"""What handlers reach through the app: typed keys, no globals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tillhook.alerts import Alerts
from tillhook.catalogue import Catalogue
from tillhook.clock import Clock
from tillhook.config import Config
from tillhook.dispatcher import Dispatcher
from tillhook.expressions.sandbox import Sandbox
from tillhook.gates import EndpointGates
from tillhook.metrics import Metrics
from tillhook.registry import EndpointRegistry
from tillhook.shaping import FanOut
from tillhook.sharing import SharedNews, Sharing
from tillhook.store.port import Outbox


@dataclass(frozen=True, slots=True)
class Tokens:
    ingest: bytes
    admin: bytes
    viewer: bytes


class OnDemand:
    """A sandbox made at its first use: it runs a child process, not worth starting for
    previews nobody asks for."""

    def __init__(self, make: Callable[[], Sandbox]) -> None:
        self._make = make
        self.made: Sandbox | None = None

    def get(self) -> Sandbox:
        if self.made is None:
            self.made = self._make()
        return self.made


@dataclass(slots=True)
class Services:
    config: Config
    clock: Clock
    store: Outbox
    registry: EndpointRegistry
    dispatcher: Dispatcher
    gates: EndpointGates  # what lets attempts start, and each endpoint's health: read it here
    session: aiohttp.ClientSession
    tokens: Tokens
    started_monotonic: float
    metrics: Metrics
    sandbox: Sandbox  # the ingest path's: filters at fan-out
    delivery_sandbox: Sandbox  # the attempts': transforms, filters checked again
    alerts: Alerts
    fan_out: FanOut  # the endpoints' filters, as events come in
    preview_sandbox: OnDemand  # previews': a runaway one holds up neither of the others
    catalogue: Catalogue = field(default_factory=Catalogue)  # the config's [[event_types]]
    shared: SharedNews | None = None  # with an outbox shared by several daemons: their news
    sharing: Sharing | None = None  # and this daemon among them (None: it keeps the outbox alone)


SERVICES = web.AppKey("services", Services)
# Who the caller is, set by the auth middleware: "admin", "viewer" or "ingest".
ROLE = web.RequestKey("role", str)
