"""The composition root: build_app wires config, store, dispatcher and handlers; serve runs
it until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from tillhook import __version__
from tillhook.alerts import Alerts
from tillhook.api.auth import auth_middleware
from tillhook.api.connections import ConnectionLimits, ConnectionTracker, TrackedSite
from tillhook.api.dashboard.guard import dashboard_guard
from tillhook.api.dashboard.routes import add_dashboard
from tillhook.api.descriptors import (
    AcceptErrors,
    connection_budget,
    raise_open_file_limit,
)
from tillhook.api.openapi import get_openapi
from tillhook.api.problems import problems_middleware
from tillhook.api.routes import add_routes
from tillhook.api.state import SERVICES, OnDemand, Services, Tokens
from tillhook.catalogue import Catalogue
from tillhook.clock import Clock, SystemClock
from tillhook.config import Config, EndpointConfig
from tillhook.delivery import Deliverer, make_session
from tillhook.dispatcher import OUTCOME_WRITE_S, Dispatcher
from tillhook.errors import TillhookError
from tillhook.expressions.sandbox import Sandbox
from tillhook.gates import EndpointGates
from tillhook.metrics import Metrics
from tillhook.models import Endpoint, SigningSecret
from tillhook.registry import EndpointRegistry
from tillhook.retention import Retention
from tillhook.retry import RetryPolicy
from tillhook.sdnotify import Notifier
from tillhook.shaping import FanOut
from tillhook.sharing import SharedNews, Sharing
from tillhook.store import SqliteStore
from tillhook.store.pg.outbox import PostgresStore
from tillhook.store.port import ConfigApplied, EndpointsChanged, Outbox
from tillhook.store.watch import DatabaseWatch
from tillhook.targets import AddressPolicy

log = structlog.get_logger("tillhook")


def config_endpoint(spec: EndpointConfig) -> Endpoint:
    secret = spec.secret.get_secret_value() if spec.secret else None
    return spec.record((SigningSecret(secret),) if secret else (), config_managed=True)


Store = SqliteStore | PostgresStore


def make_store(config: Config, clock: Clock | None = None) -> Store:
    """The outbox the config names, not opened: `serve` opens it, the commands beside the
    daemon (`backup`, `tokens`) use what needs no opening."""
    storage = config.storage
    if storage.postgres is not None:
        return PostgresStore(storage.postgres, lease_s=storage.lease, now=(clock or SystemClock()).now)
    return SqliteStore(storage.path)


def build_app(
    config: Config,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    run_dispatcher: bool = True,
) -> web.Application:
    """The whole daemon as an aiohttp app. With run_dispatcher=False nothing is delivered
    until the caller steps `Dispatcher.run_once` itself (tests with a fake clock)."""
    clock = clock or SystemClock()
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[problems_middleware, dashboard_guard, auth_middleware],
    )
    add_routes(app)
    add_dashboard(app, clock)
    app.router.add_get("/openapi.json", get_openapi)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        the_store = store or make_store(config, clock)
        await the_store.open()
        try:
            services = await _start(config, clock, the_store, run_dispatcher)
        except BaseException:
            await the_store.close()
            raise
        app[SERVICES] = services
        try:
            yield
        finally:
            await services.dispatcher.stop(config.server.shutdown_grace)
            if services.shared is not None:
                await services.shared.close()
            await services.alerts.close(OUTCOME_WRITE_S)  # those the last outcomes raised
            await services.session.close()
            await services.sandbox.close()
            await services.delivery_sandbox.close()
            if services.preview_sandbox.made is not None:
                await services.preview_sandbox.made.close()
            await the_store.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def _log_config_applied(applied: ConfigApplied) -> None:
    """What applying the config file's endpoints changed, in the log for the operator."""
    for name in applied.removed:
        log.warning(
            "endpoint_removed_from_config",
            endpoint=name,
            action="no new deliveries; its pending ones are held until it is back in the file",
        )
    for name, enabled, released in applied.restored:
        action = (
            f"enabled again; {released} held deliveries go out"
            if enabled
            else "still disabled, as before it was taken out"
        )
        log.info("endpoint_restored_from_config", endpoint=name, released=released, action=action)


async def _start(config: Config, clock: Clock, store: Store, run_dispatcher: bool) -> Services:
    auth = config.auth
    tokens = await store.tokens(
        auth.ingest_token.get_secret_value() if auth.ingest_token else None,
        auth.admin_token.get_secret_value() if auth.admin_token else None,
        auth.viewer_token.get_secret_value() if auth.viewer_token else None,
    )
    _log_config_applied(await store.apply_config_endpoints([config_endpoint(e) for e in config.endpoints], clock.now()))
    registry = EndpointRegistry(await store.list_endpoints())
    delivery = config.delivery
    policy = AddressPolicy(delivery.allow_networks)
    session = make_session(policy)
    # A sandbox each for ingest and attempts, so that a transform stopped at its time bound
    # never holds up ingest; previews get a third, made when the first one is asked for.
    sandbox, delivery_sandbox = Sandbox(name="ingest"), Sandbox(name="delivery")
    deliverer = Deliverer(
        session,
        policy,
        clock,
        timeout_s=delivery.timeout,
        allow_http=delivery.allow_http,
        response_body_limit=delivery.response_body_limit,
        sandbox=delivery_sandbox,
    )
    retry_policy = RetryPolicy(tuple(delivery.retry_schedule), delivery.give_up_after)
    gates = EndpointGates(
        retry_policy, max_in_flight=delivery.max_in_flight, endpoint_max_in_flight=delivery.endpoint_max_in_flight
    )
    # What the rest reads, writes and administers through: the port (mypy checks that the
    # SQLite adapter is one).
    outbox: Outbox = store
    dispatcher = Dispatcher(outbox, deliverer, registry, retry_policy, clock, gates)
    metrics = Metrics()
    dispatcher.on_attempt = metrics.attempted
    store.on_commit = metrics.committed
    fan_out = FanOut(registry, sandbox, clock)
    alerts = Alerts(
        outbox,
        registry,
        dispatcher,
        gates,
        clock,
        metrics,
        backlog_age_s=config.alerts.backlog_age,
        fan_out=fan_out,
    )
    dispatcher.transitions = alerts
    shared, sharing = _share(store, registry, dispatcher, gates, alerts)
    if run_dispatcher:
        dispatcher.start()
    return Services(
        config=config,
        clock=clock,
        store=outbox,
        registry=registry,
        dispatcher=dispatcher,
        gates=gates,
        session=session,
        tokens=Tokens(tokens.ingest.encode(), tokens.admin.encode(), tokens.viewer.encode()),
        started_monotonic=clock.monotonic(),
        metrics=metrics,
        sandbox=sandbox,
        delivery_sandbox=delivery_sandbox,
        alerts=alerts,
        fan_out=fan_out,
        preview_sandbox=OnDemand(lambda: Sandbox(name="preview")),
        catalogue=Catalogue(config.event_types),
        shared=shared,
        sharing=sharing,
    )


def _share(
    store: Store, registry: EndpointRegistry, dispatcher: Dispatcher, gates: EndpointGates, alerts: Alerts
) -> tuple[SharedNews | None, Sharing | None]:
    """With an outbox shared by several daemons: this one serves the endpoints its presence
    wins, checks the backlog if it wins that too, acts on the others' news, and says which
    daemon serves what in its status."""
    if not isinstance(store, PostgresStore):
        return None, None
    presence = store.presence
    gates.serves = presence.serves
    alerts.checks_backlog = lambda: presence.serves("tillhook:backlog")
    shared = SharedNews(store, registry, dispatcher, gates)
    presence.on_news = shared.heard
    shared.heard(EndpointsChanged())  # what changed since the registry was read, before anyone listened
    return shared, Sharing(presence.daemon_id, presence.server_of)


async def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT (0) or until a background task dies (1)."""
    # Handlers first: a stop asked for while starting up is honoured once started, cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connections = _connection_tracker(config)
    accept_errors = AcceptErrors()
    accept_errors.install(loop)
    store = make_store(config)
    app = build_app(config, store=store)
    app.middlewares.insert(0, connections.middleware)  # outermost: it sees every request
    runner = await _listen(app, config, connections)
    services = app[SERVICES]
    store.announce(listen=_bound(runner, config))  # named by a second daemon's refusal
    notifier = Notifier()
    notifier.send("READY=1", f"STATUS=delivering; listening on {_bound(runner, config)}")
    log.info(
        "serve_started",
        version=__version__,
        listen=_bound(runner, config),
        database=services.store.location,
        endpoints=len(services.registry.all()),
    )
    side = _side_tasks(services, store, config, connections, notifier)
    stopper = asyncio.create_task(stop.wait(), name="tillhook-stop-signal")
    watched = [t for t in (services.dispatcher.task, services.store.writer) if t is not None]
    watched += [side[name] for name in ("retention", "connections", "database-watch", "alerts") if name in side]
    if isinstance(store, PostgresStore) and store.presence.task is not None:
        watched.append(store.presence.task)
    done, _ = await asyncio.wait([stopper, *watched], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stopper not in done:
        died = next(iter(done))
        log.critical("background_task_died", task=died.get_name(), error=repr(died.exception()))
        code = 1
    stopper.cancel()
    notifier.send("STOPPING=1", "STATUS=draining deliveries in flight")
    log.info("serve_stopping", grace_s=config.server.shutdown_grace)
    side["retention"].cancel()
    if "database-watch" in side:
        side["database-watch"].cancel()
    side["alerts"].cancel()
    await runner.cleanup()
    side["connections"].cancel()
    side["watchdog"].cancel()
    accept_errors.uninstall(loop)
    log.info("serve_stopped")
    return code


async def _listen(app: web.Application, config: Config, connections: ConnectionTracker) -> web.AppRunner:
    """Start the app (opening the database) and bind the listen address."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=config.server.shutdown_grace)
    await runner.setup()
    site = TrackedSite(runner, config.server.address, connections)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise TillhookError(f"cannot listen on {config.server.listen}: {exc.strerror or exc}") from None
    return runner


def _side_tasks(
    services: Services, store: Store, config: Config, connections: ConnectionTracker, notifier: Notifier
) -> dict[str, asyncio.Task[None]]:
    """The background tasks beside the dispatcher and the writer, each named and kept; all
    but the watchdog stop the daemon loudly if they die."""
    runs = {
        "retention": Retention(services.store, services.clock, config.storage.retention).run(),
        "watchdog": notifier.keep_alive(lambda: services.dispatcher.last_tick_monotonic, services.clock.monotonic),
        "connections": connections.sweep(),
        "alerts": services.alerts.run(),
    }
    if isinstance(store, SqliteStore):  # a file that can be moved or deleted under the daemon
        runs["database-watch"] = DatabaseWatch(store).run()
    return {name: asyncio.create_task(run, name=f"tillhook-{name}") for name, run in runs.items()}


def _connection_tracker(config: Config) -> ConnectionTracker:
    server = config.server
    budget = connection_budget(server.max_connections, config.delivery.max_in_flight, raise_open_file_limit())
    if budget.lowered:
        log.warning(
            "max_connections_lowered",
            configured=server.max_connections,
            effective=budget.max_connections,
            open_file_limit=budget.open_files,
            delivery_max_in_flight=config.delivery.max_in_flight,
        )
    return ConnectionTracker(ConnectionLimits(budget.max_connections, server.idle_timeout, server.header_timeout))


def _bound(runner: web.AppRunner, config: Config) -> str:
    address = config.server.address
    if address.unix_path is not None:
        return f"unix:{address.unix_path}"
    host, port = runner.addresses[0][:2]
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
