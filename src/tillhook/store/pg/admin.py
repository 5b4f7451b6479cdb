"""The endpoint writes, tokens, config, replay, retry and purge of the PostgreSQL outbox."""
