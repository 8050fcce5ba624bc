"""The registry's use cases: register, promote, roll back, show.

`usecases/models.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import pytest
from helpers import REPOSITORY, artifact_with

from screening.errors import ScreeningError
from screening.model.released import RELEASED_ARTIFACT, RELEASES
from screening.usecases.context import active_model
from screening.usecases.models import list_models, promote_model, register_model, roll_back, show_model

RELEASED = REPOSITORY / "models" / RELEASED_ARTIFACT


def sheet_of(folder):
    path = folder / "not-a-model.zip"
    path.write_text("image,truth\n")
    return path


@pytest.mark.integration  # an artifact of its own registered, loaded and scored on the reference films
def test_register_promote_and_roll_back_without_hard_coded_ids(services, tmp_path):
    released = active_model(services)
    registration = register_model(services, artifact_with(RELEASED, tmp_path / "other.zip", name="other"))
    other = registration.version
    assert other.status == "candidate" and other.id != released.id and not registration.already_registered
    again = register_model(services, tmp_path / "other.zip")  # the same bytes: said, nothing added
    assert again.already_registered and again.version.id == other.id
    assert promote_model(services, other.id).id == other.id
    statuses = {summary.id: summary.status for summary in list_models(services)}
    assert statuses.pop(other.id) == "active" and set(statuses.values()) == {"retired"}
    assert len(statuses) == len(RELEASES) and max(statuses) == released.id
    assert roll_back(services).id == released.id
    assert show_model(services, other.id).status == "retired"
    for earlier in sorted(statuses, reverse=True)[1:]:  # further back, release by release, to the first
        assert roll_back(services).id == earlier
    with pytest.raises(ScreeningError, match="no earlier active version"):
        roll_back(services)
    with pytest.raises(ScreeningError, match="not a model artifact"):
        register_model(services, sheet_of(tmp_path))
