"""One exception hierarchy; each class's docstring is its default message."""


class TillhookError(Exception):
    """Something went wrong in tillhook."""

    def __init__(self, message: str | None = None, **context: object) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.context = context
        super().__init__(self.message)


class ConfigError(TillhookError):
    """The configuration is not valid."""

    def __init__(self, message: str | None = None, errors: list[str] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


class StoreError(TillhookError):
    """The database could not be used."""


class StoreUnavailable(StoreError):
    """The database is not accepting writes right now (disk full, read-only or locked)."""


class DatabaseInUse(StoreError):
    """Another tillhook holds this database; run one daemon per database."""


class NoDatabase(StoreError):
    """There is no database at the configured path."""


class SchemaTooNew(StoreError):
    """The database was written by a newer tillhook; upgrade tillhook or use another database file."""


class NotFound(TillhookError):
    """No such object."""

    def __init__(self, message: str | None = None, *, slug: str = "not-found") -> None:
        self.slug = slug
        super().__init__(message)


class Conflict(TillhookError):
    """The request conflicts with the current state."""

    def __init__(self, message: str | None = None, *, slug: str = "conflict") -> None:
        self.slug = slug
        super().__init__(message)


class BlockedAddress(OSError):
    """A delivery target resolved to an address the delivery policy refuses.

    An OSError so that aiohttp reports it like any other failure to connect.
    """


class InvalidInput(TillhookError):
    """The request is not valid."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 422,
        slug: str = "invalid-input",
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.slug = slug
        self.errors = errors
        super().__init__(message)
