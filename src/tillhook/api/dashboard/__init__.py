"""The shop's dashboard: server-rendered pages over the same functions the admin API calls."""
