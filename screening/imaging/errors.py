"""Why an input was not screened. The message is recorded in the results table, so keep it PHI-free."""


class ImageRejected(Exception):
    status = "failed"

    @property
    def reason(self) -> str:
        return str(self)


class NotScreenable(ImageRejected):
    """A valid file that this product must not score: wrong modality or body part, colour, too large."""

    status = "skipped"


class Unreadable(ImageRejected):
    """A file that should be an image but cannot be decoded: corrupt, truncated, empty."""

    status = "failed"
