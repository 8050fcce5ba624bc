"""The product's own errors: one tree, so an edge (a click command, a Celery task) can turn any of them
into a clear message without a traceback. Messages never carry patient data."""


class ScreeningError(Exception):
    """Something the user can act on; its message says what and how."""


class SettingsError(ScreeningError):
    """A SCREEN_* variable has a value that cannot work."""
