"""Prometheus metrics, in a registry of the app's own (no globals). Counters are bumped as
things happen; gauges that mirror the database are refreshed at each scrape."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# An attempt takes from a millisecond on the LAN to delivery.timeout.
_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_ingested = Counter(
            "tillhook_events_ingested", "Events accepted (not counting duplicates), by type", ["type"], registry=r
        )
        self.attempts = Counter(
            "tillhook_attempts", "Delivery attempts, by endpoint and outcome", ["endpoint", "outcome"], registry=r
        )
        self.attempt_duration = Histogram(
            "tillhook_attempt_duration_seconds",
            "Time from connect to the receiver's answer",
            ["endpoint"],
            buckets=_DURATION_BUCKETS_S,
            registry=r,
        )
        self.commit_batch = Histogram(
            "tillhook_commit_batch_size",
            "Writes sharing one transaction (group commit)",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.deliveries = Gauge("tillhook_deliveries", "Deliveries in the database, by state", ["state"], registry=r)
        self.backlog = Gauge("tillhook_backlog", "Pending deliveries, by endpoint", ["endpoint"], registry=r)
        self.oldest_pending_age = Gauge(
            "tillhook_oldest_pending_age_seconds",
            "Age of the oldest pending delivery, by endpoint",
            ["endpoint"],
            registry=r,
        )
        self.in_flight = Gauge("tillhook_in_flight", "Attempts under way, by endpoint", ["endpoint"], registry=r)
        self.endpoint_state = Gauge(
            "tillhook_endpoint_state",
            "1 for the endpoint's current state: healthy, backing_off, paused or disabled",
            ["endpoint", "state"],
            registry=r,
        )
        self.alerts_emitted = Counter(
            "tillhook_alerts_emitted", "tillhook's own alert events stored for delivery, by type", ["type"], registry=r
        )
        self.database_size = Gauge(
            "tillhook_database_size_bytes", "The database file and its write-ahead log", registry=r
        )
        self._attempt_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def attempted(self, endpoint: str, outcome: str, duration_s: float) -> None:
        # The labelled children are kept: looking them up costs more than the update itself,
        # once per attempt.
        children = self._attempt_children.get((endpoint, outcome))
        if children is None:
            children = self._attempt_children[(endpoint, outcome)] = (
                self.attempts.labels(endpoint, outcome),
                self.attempt_duration.labels(endpoint),
            )
        children[0].inc()
        children[1].observe(duration_s)

    def committed(self, ops: int) -> None:
        self.commit_batch.observe(ops)
