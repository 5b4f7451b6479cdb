"""The PostgreSQL outbox's schema: migrations keyed by the version in `schema_version` (entry N
brings a database to version N+1), applied under an advisory lock so that daemons starting
together migrate once. The tables mirror the SQLite outbox's, with what sharing adds: a
claimed delivery's daemon and lease, and the daemons themselves."""

from __future__ import annotations

import asyncpg

from tillhook.errors import SchemaTooNew
from tillhook.store.schema import duration_bucket

# The first key of every advisory lock tillhook takes (the second names what is locked), so
# that its locks never collide with another program's on the same database.
LOCK_SPACE = 29713
MIGRATION_LOCK = 1


MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        key text PRIMARY KEY,
        value text NOT NULL
    );
    CREATE TABLE endpoints (
        id text PRIMARY KEY,
        name text NOT NULL UNIQUE,
        url text NOT NULL,
        events text NOT NULL,                  -- JSON array of patterns
        secrets text NOT NULL,                 -- JSON array of {secret, expires_at}, current first
        max_in_flight integer,
        rate_limit double precision,
        ordered boolean NOT NULL DEFAULT false,
        headers text NOT NULL DEFAULT '{}',
        enabled boolean NOT NULL DEFAULT true,
        disabled_reason text,
        config_managed boolean NOT NULL DEFAULT false,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        last_success_at double precision,
        last_failure_at double precision,
        last_failure_reason text,
        deleted_at double precision,
        removed_from_config_at double precision,
        disabled_before_removal text,
        filter text,
        transform text,
        preset text,
        extra_signature text
    );
    CREATE TABLE events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,   -- order of acceptance
        id text NOT NULL UNIQUE,
        idempotency_key text UNIQUE,
        type text NOT NULL,
        created_at double precision NOT NULL,
        body bytea NOT NULL,
        timestamp_given boolean,
        filtered_out text                      -- JSON array of endpoint ids its filter left out
    );
    CREATE INDEX events_by_time ON events (created_at);
    -- Delivery ids are taken before the rows are written (a started delivery is returned
    -- without reading it back); per endpoint they are also the order of acceptance.
    CREATE SEQUENCE deliveries_id_seq AS bigint;
    CREATE TABLE deliveries (
        id bigint PRIMARY KEY DEFAULT nextval('deliveries_id_seq'),
        event_id text NOT NULL,
        endpoint_id text NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision,
        first_attempt_at double precision,
        last_attempt_at double precision,
        last_status integer,
        last_error text,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        check_filter boolean NOT NULL DEFAULT false,
        claimed_by text,                       -- the daemon attempting it, while delivering
        lease_until double precision           -- until when that daemon holds it
    );
    ALTER SEQUENCE deliveries_id_seq OWNED BY deliveries.id;
    CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX deliveries_by_event ON deliveries (event_id);
    CREATE INDEX deliveries_in_flight ON deliveries (claimed_by, lease_until) WHERE state = 'delivering';
    CREATE INDEX deliveries_unfinished ON deliveries (endpoint_id, id) WHERE state IN ('pending', 'delivering');
    CREATE INDEX deliveries_unsuccessful ON deliveries (state) WHERE state IN ('failed', 'cancelled');
    CREATE INDEX deliveries_by_status ON deliveries (last_status, id);
    CREATE TABLE attempts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id bigint NOT NULL,
        endpoint_id text NOT NULL,             -- its delivery's: the trigger below needs no join
        started_at double precision NOT NULL,
        duration_ms double precision NOT NULL,
        status integer,
        error text,
        response_excerpt text,
        outcome text NOT NULL,
        body_sent bytea                        -- a transform's body; NULL: the event's own went
    );
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id);
    CREATE TABLE attempt_hours (
        hour integer NOT NULL,                 -- started_at // 3600
        bucket integer NOT NULL,               -- duration histogram step: DURATION_EDGES_MS
        delivered integer NOT NULL,
        failed integer NOT NULL,
        PRIMARY KEY (hour, bucket)
    );
    -- The daemons sharing this outbox: each renews its row while it runs; one not seen
    -- within its lease is taken for dead, and its claimed deliveries are taken back.
    CREATE TABLE daemons (
        id text PRIMARY KEY,
        host text NOT NULL,
        pid integer NOT NULL,
        listen text,
        started_at double precision NOT NULL,
        seen_at double precision NOT NULL,
        lease_s double precision NOT NULL
    );
    -- An endpoint's last success and failure, and the attempts per hour, kept by the
    -- database as attempts are written: once per statement (a batch of outcomes), not per
    -- row, with the rows it locks taken in one order, so that two daemons writing outcomes
    -- at once wait for each other rather than deadlock.
    CREATE FUNCTION tillhook_attempts_written() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE endpoints ep SET
            last_success_at = coalesce(s.success_at, ep.last_success_at),
            last_failure_at = coalesce(s.failure_at, ep.last_failure_at),
            last_failure_reason = CASE WHEN s.failure_at IS NULL THEN ep.last_failure_reason
                ELSE s.failure_reason END
        FROM (
            SELECT a.endpoint_id,
                max(a.started_at) FILTER (WHERE a.outcome = 'delivered') AS success_at,
                max(a.started_at) FILTER (WHERE a.outcome <> 'delivered') AS failure_at,
                (array_agg(coalesce(a.error, 'HTTP ' || a.status) ORDER BY a.started_at DESC)
                    FILTER (WHERE a.outcome <> 'delivered'))[1] AS failure_reason
            FROM new_attempts a
            WHERE a.outcome <> 'filtered_out'
            GROUP BY a.endpoint_id
            ORDER BY a.endpoint_id
        ) s
        WHERE ep.id = s.endpoint_id;
        INSERT INTO attempt_hours AS h (hour, bucket, delivered, failed)
            SELECT floor(a.started_at / 3600)::integer, DURATION_BUCKET,
                count(*) FILTER (WHERE a.outcome = 'delivered'), count(*) FILTER (WHERE a.outcome <> 'delivered')
            FROM new_attempts a WHERE a.outcome <> 'filtered_out'
            GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (hour, bucket) DO UPDATE SET
                delivered = h.delivered + excluded.delivered, failed = h.failed + excluded.failed;
        DELETE FROM attempt_hours WHERE hour < (SELECT floor(max(started_at) / 3600)::integer - 31 * 24
            FROM new_attempts);
        RETURN NULL;
    END $$;
    CREATE TRIGGER attempts_written AFTER INSERT ON attempts REFERENCING NEW TABLE AS new_attempts
        FOR EACH STATEMENT EXECUTE FUNCTION tillhook_attempts_written();
    -- Whether an event type matches an endpoint's patterns (a JSON array, or one pattern), by
    -- the rules of rules.py `pattern_matches`: "*" alone and "**" alone match every type but
    -- tillhook's own, which only patterns naming "tillhook" first match; elsewhere "*" is one
    -- segment and a final "**" one or more.
    CREATE FUNCTION tillhook_pattern_matches(pattern text, event_type text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
    DECLARE
        have text[] := string_to_array(event_type, '.');
        want text[] := string_to_array(pattern, '.');
        own boolean := have[1] = 'tillhook';
        n integer;
    BEGIN
        IF pattern IN ('*', '**') THEN
            RETURN NOT own;
        END IF;
        IF own AND want[1] <> 'tillhook' THEN
            RETURN false;
        END IF;
        n := cardinality(want);
        IF want[n] = '**' THEN
            n := n - 1;
            IF cardinality(have) <= n THEN
                RETURN false;
            END IF;
        ELSIF cardinality(have) <> n THEN
            RETURN false;
        END IF;
        FOR i IN 1..n LOOP
            IF want[i] <> '*' AND want[i] <> have[i] THEN
                RETURN false;
            END IF;
        END LOOP;
        RETURN true;
    END $$;
    CREATE FUNCTION tillhook_subscribes(patterns text, event_type text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT EXISTS (
            SELECT 1 FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(patterns::jsonb) = 'array' THEN patterns::jsonb
                    ELSE jsonb_build_array(patterns::jsonb) END) AS p(pattern)
            WHERE tillhook_pattern_matches(p.pattern, event_type)
        )
    $$;
    """.replace("DURATION_BUCKET", duration_bucket("a.duration_ms")),
    # 2: as SQLite's 10: endpoints' description and category, a non-strict event's schema
    # errors, whether an event is an admin's test, and every type ever accepted but tests,
    # counted once per statement. The counts are kept
    # per writing backend and summed when read: one row per type would be locked by every
    # daemon's ingest until its commit, and two daemons taking the same type would wait on
    # each other's WAL flush.
    """
    ALTER TABLE endpoints ADD COLUMN description text;
    ALTER TABLE endpoints ADD COLUMN category text;
    ALTER TABLE events ADD COLUMN schema_errors text;
    ALTER TABLE events ADD COLUMN test boolean;
    CREATE TABLE event_types_seen (
        type text NOT NULL,
        writer integer NOT NULL,               -- pg_backend_pid() of the writing connection
        count bigint NOT NULL,
        mismatched bigint NOT NULL,
        first_seen double precision NOT NULL,
        last_seen double precision NOT NULL,
        PRIMARY KEY (type, writer)
    );
    INSERT INTO event_types_seen (type, writer, count, mismatched, first_seen, last_seen)
        SELECT type, 0, count(*), 0, min(created_at), max(created_at) FROM events
        WHERE type <> 'tillhook.ping' GROUP BY type;
    CREATE FUNCTION tillhook_events_written() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO event_types_seen AS s (type, writer, count, mismatched, first_seen, last_seen)
            SELECT e.type, pg_backend_pid(), count(*), count(*) FILTER (WHERE e.schema_errors IS NOT NULL),
                min(e.created_at), max(e.created_at)
            FROM new_events e WHERE e.test IS NOT TRUE GROUP BY e.type ORDER BY e.type
            ON CONFLICT (type, writer) DO UPDATE SET
                count = s.count + excluded.count,
                mismatched = s.mismatched + excluded.mismatched,
                first_seen = least(s.first_seen, excluded.first_seen),
                last_seen = greatest(s.last_seen, excluded.last_seen);
        RETURN NULL;
    END $$;
    CREATE TRIGGER events_written AFTER INSERT ON events REFERENCING NEW TABLE AS new_events
        FOR EACH STATEMENT EXECUTE FUNCTION tillhook_events_written();
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(conn: asyncpg.Connection) -> int:
    """Bring the schema up to date; returns the version found before. Daemons starting
    together take turns: the first migrates, the others then find it done."""
    await conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_SPACE, MIGRATION_LOCK)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        found = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database has schema version {found} but this tillhook knows only up to"
                f" {SCHEMA_VERSION}: upgrade every tillhook sharing it, or point storage.url at another database"
            )
        for version in range(found, SCHEMA_VERSION):
            async with conn.transaction():
                await conn.execute(MIGRATIONS[version])
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version + 1)
        return int(found)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_SPACE, MIGRATION_LOCK)
