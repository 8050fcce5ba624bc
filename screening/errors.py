"""The product's own errors: one tree, so an edge (a click command, a web route, a Celery task) can turn any of them
into a clear message without a traceback. Messages never carry patient data.

Each error belongs to a category, and its HTTP status is written once here, beside it. The CLI answers a malformed
request as a usage error (exit status 2) and every other error with exit status 1.
"""


class ScreeningError(Exception):
    """Something the user can act on; its message says what and how. Uncategorised: the product refuses it."""

    http_status = 409


class InvalidRequest(ScreeningError, ValueError):
    """A request malformed in itself (an option value, a recipe or manifest field no run could use). Also a
    ValueError, as the values it refuses would be anywhere else."""

    http_status = 422


class NotFound(ScreeningError):
    """What was asked for does not exist: an image, a batch, a model version."""

    http_status = 404


class Conflict(ScreeningError):
    """The request is well formed, but the state of what it names refuses it: an image not scored, a film changed
    since it was screened, a batch still running, an artifact already there."""

    http_status = 409


class Unavailable(ScreeningError):
    """A service it needs cannot be reached (the database, the broker, the archive): worth trying again later."""

    http_status = 503


class SettingsError(ScreeningError):
    """A SCREEN_* variable has a value that cannot work."""
