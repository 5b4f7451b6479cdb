"""The outbox: the only place with SQL."""

from tillhook.store.sqlite import SqliteStore, describe_sqlite_error

__all__ = ["SqliteStore", "describe_sqlite_error"]
