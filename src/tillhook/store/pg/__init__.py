"""The outbox on PostgreSQL, shared by several daemons."""
