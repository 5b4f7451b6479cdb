"""Schema migrations, keyed by PRAGMA user_version: entry N brings a database to version N+1."""

from __future__ import annotations

import sqlite3

from tillhook.errors import SchemaTooNew

# Upper edges (ms) of the attempt-duration histogram's steps; a last step holds the rest.
DURATION_EDGES_MS: tuple[float, ...] = (
    1,
    1.5,
    2,
    3,
    5,
    7,
    10,
    15,
    20,
    30,
    50,
    70,
    100,
    150,
    200,
    300,
    500,
    700,
    1000,
    1500,
    2000,
    3000,
    5000,
    7000,
    10000,
    15000,
    30000,
)


def duration_bucket(column: str) -> str:
    """SQL for the histogram step of a duration: the index of the first edge above it."""
    steps = " ".join(f"WHEN {column} < {edge:g} THEN {i}" for i, edge in enumerate(DURATION_EDGES_MS))
    return f"(CASE {steps} ELSE {len(DURATION_EDGES_MS)} END)"


MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        url TEXT NOT NULL,
        events TEXT NOT NULL,              -- JSON array of patterns
        secrets TEXT NOT NULL,             -- JSON array of {secret, expires_at}, current first
        max_in_flight INTEGER,
        rate_limit REAL,
        ordered INTEGER NOT NULL DEFAULT 0,
        headers TEXT NOT NULL DEFAULT '{}',
        enabled INTEGER NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        config_managed INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,           -- order of acceptance
        id TEXT NOT NULL UNIQUE,
        idempotency_key TEXT UNIQUE,
        type TEXT NOT NULL,
        created_at REAL NOT NULL,
        body BLOB NOT NULL
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,            -- also the order of acceptance per endpoint
        event_id TEXT NOT NULL REFERENCES events(id),
        endpoint_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        first_attempt_at REAL,
        last_attempt_at REAL,
        last_status INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    -- Claiming the next due deliveries of one endpoint must stay cheap with millions of
    -- finished rows, so the index holds pending rows only.
    CREATE INDEX deliveries_due ON deliveries(endpoint_id, next_attempt_at) WHERE state = 'pending';
    CREATE INDEX deliveries_by_event ON deliveries(event_id);
    CREATE INDEX deliveries_in_flight ON deliveries(state) WHERE state = 'delivering';
    -- The head of an ordered endpoint: its oldest unfinished delivery.
    CREATE INDEX deliveries_unfinished ON deliveries(endpoint_id, id) WHERE state IN ('pending', 'delivering');
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
        started_at REAL NOT NULL,
        duration_ms REAL NOT NULL,
        status INTEGER,
        error TEXT,
        response_excerpt TEXT,
        outcome TEXT NOT NULL
    );
    CREATE INDEX attempts_by_delivery ON attempts(delivery_id);
    """,
    # 2: what the admin API reports per endpoint, kept across restarts; soft deletion, so
    # that the delivery log still names the endpoint a delivery was for.
    """
    ALTER TABLE endpoints ADD COLUMN last_success_at REAL;
    ALTER TABLE endpoints ADD COLUMN last_failure_at REAL;
    ALTER TABLE endpoints ADD COLUMN last_failure_reason TEXT;
    ALTER TABLE endpoints ADD COLUMN deleted_at REAL;
    CREATE INDEX events_by_time ON events(created_at);
    """,
    # 3: the endpoint's last success and failure kept by the database itself as attempts are
    # written, which costs the writer no extra round trip per batch of outcomes.
    """
    CREATE TRIGGER attempts_update_endpoint AFTER INSERT ON attempts BEGIN
        UPDATE endpoints SET
            last_success_at = CASE WHEN NEW.outcome = 'delivered' THEN NEW.started_at ELSE last_success_at END,
            last_failure_at = CASE WHEN NEW.outcome = 'delivered' THEN last_failure_at ELSE NEW.started_at END,
            last_failure_reason = CASE WHEN NEW.outcome = 'delivered' THEN last_failure_reason
                ELSE coalesce(NEW.error, 'HTTP ' || NEW.status) END
        WHERE id = (SELECT endpoint_id FROM deliveries WHERE id = NEW.delivery_id);
    END;
    """,
    # An endpoint taken out of the config file is marked as such, so that putting it back
    # (same name) enables it again, or restores the reason it was disabled for before. Those
    # taken out under the earlier schema said so only in their reason.
    """
    ALTER TABLE endpoints ADD COLUMN removed_from_config_at REAL;
    ALTER TABLE endpoints ADD COLUMN disabled_before_removal TEXT;
    UPDATE endpoints SET removed_from_config_at = updated_at
        WHERE deleted_at IS NULL AND config_managed = 0 AND enabled = 0
        AND disabled_reason = 'removed from the config file';
    """,
    # Whether the POS gave a keyed event's timestamp (NULL: not known, stored before this),
    # so that a repeat of the key can be told from the key reused with other content by
    # reading the stored body back (store/idempotency.py), only when a key does repeat.
    """
    ALTER TABLE events ADD COLUMN timestamp_given INTEGER;
    """,
    # 6: the status page's and the dashboard's figures at a cost that does not grow with the
    # history kept (counting deliveries by state took ~0.5 s at 1M rows). Failed and
    # cancelled deliveries get a partial index, as pending and delivering have one: counted
    # there, and delivered is the rest of count(*). Attempts per hour by outcome and duration
    # (a histogram whose steps grow by ~1.5x, for the hourly p50/p95) are kept by a trigger
    # beside each attempt written; hours older than 31 days are dropped as new hours begin.
    # (Counting every state change by triggers as well cost the writer ~40 us a delivery.)
    """
    CREATE INDEX deliveries_unsuccessful ON deliveries(state) WHERE state IN ('failed', 'cancelled');
    CREATE TABLE attempt_hours (
        hour INTEGER NOT NULL,             -- started_at // 3600
        bucket INTEGER NOT NULL,           -- duration histogram step: DURATION_EDGES_MS
        delivered INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        PRIMARY KEY (hour, bucket)
    ) WITHOUT ROWID;
    INSERT INTO attempt_hours (hour, bucket, delivered, failed)
        SELECT CAST(started_at / 3600 AS INTEGER), DURATION_BUCKET, sum(outcome = 'delivered'),
            sum(outcome != 'delivered') FROM attempts
            WHERE started_at >= CAST(strftime('%s', 'now') AS INTEGER) - 31 * 86400 GROUP BY 1, 2;
    CREATE TRIGGER attempts_count_hour AFTER INSERT ON attempts BEGIN
        INSERT INTO attempt_hours (hour, bucket, delivered, failed)
            VALUES (CAST(NEW.started_at / 3600 AS INTEGER), NEW_DURATION_BUCKET,
                NEW.outcome = 'delivered', NEW.outcome != 'delivered')
            ON CONFLICT (hour, bucket) DO UPDATE SET
                delivered = delivered + excluded.delivered, failed = failed + excluded.failed;
    END;
    CREATE TRIGGER attempt_hours_prune AFTER INSERT ON attempt_hours BEGIN
        DELETE FROM attempt_hours WHERE hour < NEW.hour - 31 * 24;
    END;
    """.replace("NEW_DURATION_BUCKET", duration_bucket("NEW.duration_ms")).replace(
        "DURATION_BUCKET", duration_bucket("duration_ms")
    ),
    # 7: the delivery log filtered by HTTP status, newest first, without reading every row
    # (a status that matched nothing read the whole table: ~0.2 s at 1M deliveries).
    """
    CREATE INDEX deliveries_by_status ON deliveries(last_status, id);
    """,
    # 8: what an endpoint is sent: its filter, transform or chat preset, and a second
    # signature header. An event records the endpoints its filter left out; a delivery made
    # while its filter could not be evaluated checks it again before each attempt; an attempt
    # keeps the body it sent when a transform made it (NULL: the event's own body went).
    """
    ALTER TABLE endpoints ADD COLUMN filter TEXT;
    ALTER TABLE endpoints ADD COLUMN transform TEXT;
    ALTER TABLE endpoints ADD COLUMN preset TEXT;
    ALTER TABLE endpoints ADD COLUMN extra_signature TEXT;
    ALTER TABLE events ADD COLUMN filtered_out TEXT;
    ALTER TABLE deliveries ADD COLUMN check_filter INTEGER;
    ALTER TABLE attempts ADD COLUMN body_sent BLOB;
    DROP TRIGGER attempts_update_endpoint;
    CREATE TRIGGER attempts_update_endpoint AFTER INSERT ON attempts WHEN NEW.outcome != 'filtered_out' BEGIN
        UPDATE endpoints SET
            last_success_at = CASE WHEN NEW.outcome = 'delivered' THEN NEW.started_at ELSE last_success_at END,
            last_failure_at = CASE WHEN NEW.outcome = 'delivered' THEN last_failure_at ELSE NEW.started_at END,
            last_failure_reason = CASE WHEN NEW.outcome = 'delivered' THEN last_failure_reason
                ELSE coalesce(NEW.error, 'HTTP ' || NEW.status) END
        WHERE id = (SELECT endpoint_id FROM deliveries WHERE id = NEW.delivery_id);
    END;
    """,
    # 9: an attempt that sent nothing (a filter, checked again, left the event out) is no
    # failure in the hourly figures either.
    """
    DROP TRIGGER attempts_count_hour;
    CREATE TRIGGER attempts_count_hour AFTER INSERT ON attempts WHEN NEW.outcome != 'filtered_out' BEGIN
        INSERT INTO attempt_hours (hour, bucket, delivered, failed)
            VALUES (CAST(NEW.started_at / 3600 AS INTEGER), NEW_DURATION_BUCKET,
                NEW.outcome = 'delivered', NEW.outcome != 'delivered')
            ON CONFLICT (hour, bucket) DO UPDATE SET
                delivered = delivered + excluded.delivered, failed = failed + excluded.failed;
    END;
    """.replace("NEW_DURATION_BUCKET", duration_bucket("NEW.duration_ms")),
    # 10: an endpoint's description and category (how the shop groups its endpoints); an
    # event whose data broke its catalogue type's schema, where that type is not strict,
    # keeps what broke (a JSON array of {field, message}; NULL: it matched, or its type has no
    # schema); and every type ever accepted, counted by the database as events are written,
    # so that listing what the POS really sends never reads the events themselves (counts
    # outlive the events' retention). Tests the admin sends (the ping, a type's example) are
    # marked and not counted.
    """
    ALTER TABLE endpoints ADD COLUMN description TEXT;
    ALTER TABLE endpoints ADD COLUMN category TEXT;
    ALTER TABLE events ADD COLUMN schema_errors TEXT;
    ALTER TABLE events ADD COLUMN test INTEGER;
    CREATE TABLE event_types_seen (
        type TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        mismatched INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO event_types_seen (type, count, mismatched, first_seen, last_seen)
        SELECT type, count(*), 0, min(created_at), max(created_at) FROM events
        WHERE type != 'tillhook.ping' GROUP BY type;
    CREATE TRIGGER events_count_type AFTER INSERT ON events WHEN NEW.test IS NOT 1 BEGIN
        INSERT INTO event_types_seen (type, count, mismatched, first_seen, last_seen)
            VALUES (NEW.type, 1, NEW.schema_errors IS NOT NULL, NEW.created_at, NEW.created_at)
            ON CONFLICT (type) DO UPDATE SET
                count = count + 1,
                mismatched = mismatched + excluded.mismatched,
                first_seen = min(first_seen, excluded.first_seen),
                last_seen = max(last_seen, excluded.last_seen);
    END;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version found before."""
    row = conn.execute("PRAGMA user_version").fetchone()
    found = int(row[0]) if row else 0
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database has schema version {found} but this tillhook knows only up to"
            f" {SCHEMA_VERSION}: upgrade tillhook, or point storage.path at another file"
        )
    for version in range(found, SCHEMA_VERSION):
        conn.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[version]}; PRAGMA user_version = {version + 1}; COMMIT;")
    return found
