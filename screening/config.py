"""Settings from SCREEN_* environment variables, with an embedded default that needs none.

Every value is checked once, when the settings are loaded, and a bad one is refused with a
message that names the variable: a typo must not surface later as a traceback or as a run
that quietly screens nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from screening.errors import SettingsError

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DATABASE_SCHEMES = ("sqlite", "postgresql")
BROKER_SCHEMES = ("redis", "rediss")
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class ImageLimits:
    """What one file may cost before it is refused, wherever it is read (worker, training, preview)."""

    max_file_bytes: int = 512 * 2**20
    max_image_pixels: int = 60_000_000


@dataclass(frozen=True)
class DicomPeer:
    """A DICOM node to send to: `AE@host:port`."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class DicomSettings:
    """The product as a DICOM node: what it accepts, where it spools, where results go."""

    ae_title: str  # this node's: the listener answers to it alone, and sends results as it
    device_uid: str  # the Device Observer UID of every report this installation makes
    spool_dir: Path
    settle_s: int  # a study becomes a batch once no instance of it arrived for this long
    max_wait_s: int  # ... or once its first instance arrived this long ago, whatever keeps arriving
    allowed_aes: tuple[str, ...]  # calling AE titles accepted by `screen listen` (with its --allow)
    results_destination: DicomPeer | None
    send_max_attempts: int
    send_backoff_s: int  # the wait before retry n is send_backoff_s * 2 ** (n - 1)
    max_instance_bytes: int  # one received instance at most
    associations_per_ae: int  # open at once per calling AE title, of the listener's 16
    idle_timeout_s: int  # an association with no traffic for this long is closed


@dataclass(frozen=True)
class WebSettings:
    """The review app's sign-in."""

    token: str | None  # SCREEN_WEB_TOKEN: browsers sign in with it, API clients send it; no token, no app
    session_idle_s: int  # a browser session lapses after this long without a request
    secure_cookie: bool  # the session cookie only over HTTPS (behind a TLS proxy)
    hide_identifiers: bool = False  # the worklist without patient IDs and accession numbers (shared screens)
    page_size: int = 100  # images per worklist page

    @property
    def token_problem(self) -> str | None:
        """Why the token cannot guard the app, or None."""
        if not self.token or len(self.token.strip()) < 16:
            return (
                "set SCREEN_WEB_TOKEN to a secret of at least 16 characters (not blanks): nothing is served "
                "without sign-in"
            )
        return None


@dataclass(frozen=True)
class WorkLease:
    """How a worker holds the images it screens (and the results it sends): it renews its claim every
    `heartbeat_s`; a claim not renewed for `lease_s` is its process gone, and anyone may take the work over."""

    heartbeat_s: float = 10
    lease_s: float = 60

    def __post_init__(self) -> None:
        if self.lease_s < 3 * self.heartbeat_s:
            raise SettingsError(
                f"SCREEN_WORK_LEASE ({self.lease_s} s) must be at least three heartbeats "
                f"(SCREEN_WORK_HEARTBEAT {self.heartbeat_s} s), or a busy worker loses work it is still doing"
            )


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
    image_limits: ImageLimits
    visibility_timeout_s: int
    enqueue_lease_s: int
    work_lease: WorkLease
    dtype_policy: str
    device: str
    retrain_schedule: str
    publish_max_retries: int
    dicom: DicomSettings
    web: WebSettings

    @property
    def distributed(self) -> bool:
        """A broker means Celery workers do the screening; without one, the CLI does it in-process."""
        return self.broker_url is not None

    @property
    def in_process_lease(self) -> WorkLease:
        """How a `screen` process that screens by itself holds its rows: as long as its batch's lease, so that what
        it was screening when it died is taken over as soon as what it had claimed is."""
        return WorkLease(heartbeat_s=self.enqueue_lease_s / 4, lease_s=self.enqueue_lease_s)

    @property
    def registry_dir(self) -> Path:
        """The registry's own copies of registered artifacts, named by their SHA-256: never written twice."""
        return self.data_dir / "registry"


KERAS_BACKENDS = ("tensorflow", "jax")  # the model code is Keras 3 and tested on both


def _data_dir() -> Path:
    """SCREEN_DATA_DIR, made if it is not there yet: a file in its place, or a folder that cannot be made, is said
    in one line now rather than as a traceback from the first command that writes there."""
    data_dir = Path(os.environ.get("SCREEN_DATA_DIR") or Path.home() / ".local/share/screening")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SettingsError(f"SCREEN_DATA_DIR {data_dir} is a file, not a folder") from None
    except OSError as problem:
        raise SettingsError(f"SCREEN_DATA_DIR {data_dir} cannot be made ({problem.strerror})") from None
    return data_dir


def _keras_backend() -> None:
    backend = os.environ.get("KERAS_BACKEND")
    if backend and backend not in KERAS_BACKENDS:
        raise SettingsError(f"KERAS_BACKEND must be {' or '.join(KERAS_BACKENDS)}, not {backend!r}")


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, not {value}")
    return value


def _yes_no(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("1", "true", "yes", "0", "false", "no"):
        raise SettingsError(f"{name} must be true or false, not {raw!r}")
    return raw in ("1", "true", "yes")


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    try:
        scheme = make_url(value).get_backend_name()
    except ArgumentError:
        scheme = None
    if scheme not in schemes:
        examples = {
            "SCREEN_DATABASE_URL": "postgresql+psycopg://user@host/db",
            "SCREEN_BROKER_URL": "redis://host:6379/0",
        }
        raise SettingsError(
            f"{name} must be a {' or '.join(schemes)} URL such as {examples[name]} (got a value of scheme "
            f"{scheme or 'unknown'})"
        )
    return value


def _peer(name: str) -> DicomPeer | None:
    raw = os.environ.get(name) or ""
    if not raw:
        return None
    ae_title, _, address = raw.partition("@")
    host, _, port = address.rpartition(":")
    if not (0 < len(ae_title) <= 16 and host and port.isdigit() and 0 < int(port) < 65536):
        raise SettingsError(f"{name} must look like AE@host:port (an AE title of at most 16 characters), not {raw!r}")
    return DicomPeer(ae_title, host, int(port))


def _ae_title(name: str, default: str) -> str:
    value = (os.environ.get(name) or default).strip()
    if not 0 < len(value) <= 16 or "\\" in value:
        raise SettingsError(f"{name} must be an AE title of 1 to 16 characters, not {value!r}")
    return value


def installation_uid(database_url: str) -> str:
    """A UID of this installation that every process sharing its database derives alike (UUID-derived, 2.25)."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, database_url).int}"


def _device_uid(name: str, default: str) -> str:
    """The UID of the device, and the root of every UID it makes: 48 characters at most leave 15 digits of each."""
    value = os.environ.get(name) or default
    if not (len(value) <= 48 and re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+", value)):
        raise SettingsError(f"{name} must be a DICOM UID (digits and dots, at most 48 characters), not {value!r}")
    return value


def _ae_titles(name: str) -> tuple[str, ...]:
    titles = tuple(title.strip() for title in (os.environ.get(name) or "").split(",") if title.strip())
    too_long = [title for title in titles if len(title) > 16]
    if too_long:
        raise SettingsError(f"{name}: AE titles have at most 16 characters ({', '.join(too_long)})")
    return titles


def _cron(name: str, value: str) -> str:
    if len(value.split()) != 5:
        raise SettingsError(f"{name} must have the five cron fields (minute hour day month weekday), not {value!r}")
    return value


def load_settings() -> Settings:
    """The settings of this process; raises SettingsError naming the variable that is wrong."""
    data_dir = _data_dir()
    _keras_backend()
    database_url = os.environ.get("SCREEN_DATABASE_URL") or f"sqlite:///{data_dir / 'screening.db'}"
    broker_url = os.environ.get("SCREEN_BROKER_URL") or None
    chunk_size = _positive_int("SCREEN_CHUNK_SIZE", 64)
    batch_size = _positive_int("SCREEN_BATCH_SIZE", 64)
    return Settings(
        data_dir=data_dir,
        database_url=_url("SCREEN_DATABASE_URL", database_url, DATABASE_SCHEMES),
        broker_url=_url("SCREEN_BROKER_URL", broker_url, BROKER_SCHEMES) if broker_url else None,
        models_dir=Path(os.environ.get("SCREEN_MODELS_DIR") or REPOSITORY_ROOT / "models"),
        weights_dir=Path(os.environ.get("SCREEN_WEIGHTS_DIR") or Path.home() / ".cache/screening/weights"),
        chunk_size=chunk_size,
        inference_batch_size=min(batch_size, chunk_size),
        decode_threads=_positive_int("SCREEN_DECODE_THREADS", os.cpu_count() or 1),
        image_limits=ImageLimits(
            max_file_bytes=_positive_int("SCREEN_MAX_FILE_BYTES", ImageLimits.max_file_bytes),
            max_image_pixels=_positive_int("SCREEN_MAX_IMAGE_PIXELS", ImageLimits.max_image_pixels),
        ),
        visibility_timeout_s=_positive_int("SCREEN_VISIBILITY_TIMEOUT", 3600),
        enqueue_lease_s=_positive_int("SCREEN_ENQUEUE_LEASE", 30),
        work_lease=WorkLease(
            heartbeat_s=_positive_int("SCREEN_WORK_HEARTBEAT", 10),
            lease_s=_positive_int("SCREEN_WORK_LEASE", 60),
        ),
        dtype_policy=_choice("SCREEN_DTYPE_POLICY", "float32", DTYPE_POLICIES),
        device=_choice("SCREEN_DEVICE", "auto", DEVICES),
        publish_max_retries=_positive_int("SCREEN_PUBLISH_MAX_RETRIES", 40),
        retrain_schedule=_cron("SCREEN_RETRAIN_SCHEDULE", os.environ.get("SCREEN_RETRAIN_SCHEDULE") or "0 2 * * *"),
        dicom=DicomSettings(
            ae_title=_ae_title("SCREEN_DICOM_AE_TITLE", "SCREEN"),
            device_uid=_device_uid("SCREEN_DEVICE_UID", installation_uid(database_url)),
            spool_dir=Path(os.environ.get("SCREEN_SPOOL_DIR") or data_dir / "spool"),
            settle_s=_positive_int("SCREEN_STUDY_SETTLE_SECONDS", 30),
            max_wait_s=_positive_int("SCREEN_STUDY_MAX_WAIT_SECONDS", 600),
            allowed_aes=_ae_titles("SCREEN_DICOM_ALLOWED_AES"),
            results_destination=_peer("SCREEN_RESULTS_DESTINATION"),
            send_max_attempts=_positive_int("SCREEN_SEND_MAX_ATTEMPTS", 5),
            send_backoff_s=_positive_int("SCREEN_SEND_BACKOFF_SECONDS", 5),
            max_instance_bytes=_positive_int("SCREEN_DICOM_MAX_INSTANCE_BYTES", 128 * 2**20),
            associations_per_ae=_positive_int("SCREEN_DICOM_ASSOCIATIONS_PER_AE", 4),
            idle_timeout_s=_positive_int("SCREEN_DICOM_IDLE_SECONDS", 30),
        ),
        web=WebSettings(
            token=os.environ.get("SCREEN_WEB_TOKEN") or None,
            session_idle_s=_positive_int("SCREEN_WEB_SESSION_IDLE_SECONDS", 1800),
            secure_cookie=_yes_no("SCREEN_WEB_SECURE_COOKIE", False),
            hide_identifiers=_yes_no("SCREEN_WEB_HIDE_IDENTIFIERS", False),
            page_size=_positive_int("SCREEN_WEB_PAGE_SIZE", 100),
        ),
    )
