"""The outbox: the only place with SQL."""

from tillhook.store.ops import Admission
from tillhook.store.sqlite import SqliteStore, describe_sqlite_error

__all__ = ["Admission", "SqliteStore", "describe_sqlite_error"]
