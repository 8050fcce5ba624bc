"""The product's own errors: one tree, so an edge (a click command, a Celery task) can turn any of them
into a clear message without a traceback. Messages never carry patient data."""


class ScreeningError(Exception):
    """Something the user can act on; its message says what and how."""


class InvalidRequest(ScreeningError):
    """A request malformed in itself (an option value no run could use): the CLI answers it as a usage error."""


class SettingsError(ScreeningError):
    """A SCREEN_* variable has a value that cannot work."""
