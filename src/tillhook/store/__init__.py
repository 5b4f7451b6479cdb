"""The outbox: the only place with SQL."""

from tillhook.store.reads import describe_sqlite_error
from tillhook.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "describe_sqlite_error"]
