"""Why an input was not screened. The message is recorded in the results table, so keep it PHI-free:
quote only coded values from a known list, never free text from a file."""

from screening.errors import ScreeningError
from screening.vocabulary import ImageStatus


class ImageRejected(ScreeningError):
    status = ImageStatus.FAILED

    @property
    def reason(self) -> str:
        return str(self)


class NotScreenable(ImageRejected):
    """A valid file that this product must not score: wrong modality or body part, colour, too large."""

    status = ImageStatus.SKIPPED


class Unreadable(ImageRejected):
    """A file that should be an image but cannot be decoded: corrupt, truncated, empty."""

    status = ImageStatus.FAILED
