"""bootstrap() and the services every command is given.

`usecases/context.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

from pathlib import Path

from screening.model.released import RELEASED_ARTIFACT
from screening.usecases.context import active_model, bootstrap


def test_bootstrap_is_explicit_and_idempotent(services):
    first = active_model(services)
    again = bootstrap(services.settings)
    newest = Path(RELEASED_ARTIFACT).stem  # the newest release, by its own name
    assert active_model(again).id == first.id and first.name == newest
    again.engine.dispose()
