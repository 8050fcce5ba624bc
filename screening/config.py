"""Settings from SCREEN_* environment variables, with an embedded default that needs none."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str | None
    models_dir: Path
    weights_dir: Path
    chunk_size: int
    inference_batch_size: int
    decode_threads: int
    max_file_bytes: int
    max_image_pixels: int
    visibility_timeout_s: int
    dtype_policy: str
    retrain_schedule: str
    publish_max_retries: int

    @property
    def distributed(self) -> bool:
        """A broker means Celery workers do the screening; without one, the CLI does it in-process."""
        return self.broker_url is not None


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("SCREEN_DATA_DIR", Path.home() / ".local/share/screening"))
    return Settings(
        data_dir=data_dir,
        database_url=os.environ.get("SCREEN_DATABASE_URL") or f"sqlite:///{data_dir / 'screening.db'}",
        broker_url=os.environ.get("SCREEN_BROKER_URL") or None,
        models_dir=Path(os.environ.get("SCREEN_MODELS_DIR", REPOSITORY_ROOT / "models")),
        weights_dir=Path(os.environ.get("SCREEN_WEIGHTS_DIR", Path.home() / ".cache/screening/weights")),
        chunk_size=_int("SCREEN_CHUNK_SIZE", 64),
        inference_batch_size=_int("SCREEN_BATCH_SIZE", 64),
        decode_threads=_int("SCREEN_DECODE_THREADS", os.cpu_count() or 1),
        max_file_bytes=_int("SCREEN_MAX_FILE_BYTES", 512 * 2**20),
        max_image_pixels=_int("SCREEN_MAX_IMAGE_PIXELS", 60_000_000),
        visibility_timeout_s=_int("SCREEN_VISIBILITY_TIMEOUT", 3600),
        dtype_policy=os.environ.get("SCREEN_DTYPE_POLICY", "float32"),
        publish_max_retries=_int("SCREEN_PUBLISH_MAX_RETRIES", 40),
        retrain_schedule=os.environ.get("SCREEN_RETRAIN_SCHEDULE", "0 2 * * *"),  # cron: nightly at 02:00
    )
