"""docker-compose.yml (and its GPU override) are valid, need their secrets, and wire every service alike."""

import os
import shutil
import subprocess

import pytest
import yaml
from helpers import REPOSITORY

SECRETS = {
    "REDIS_PASSWORD": "redis-secret",
    "POSTGRES_PASSWORD": "postgres-secret",
    "FLOWER_BASIC_AUTH": "admin:flower-secret",
    "STUDIES_ROOT": "/srv/studies",
    "SCREEN_WEB_TOKEN": "web-secret-of-some-length",
    "SCREEN_DICOM_ALLOWED_AES": "PACS",
}
SCREENING_SERVICES = ("migrate", "worker", "flower", "enqueue", "beat", "trainer", "listener", "web")


def compose_command() -> list[str]:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True) if shutil.which("docker") else None
    if plugin is not None and plugin.returncode == 0:
        return ["docker", "compose"]
    assert shutil.which("docker-compose"), "neither `docker compose` nor `docker-compose` is installed (`make test` is)"
    return ["docker-compose"]


def config(*files: str, env: dict | None = None) -> subprocess.CompletedProcess:
    flags = [argument for name in files for argument in ("-f", name)]
    clean = {key: value for key, value in os.environ.items() if key not in SECRETS}
    return subprocess.run(
        [*compose_command(), *flags, "--profile", "tools", "config"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
    )


def test_compose_file_is_valid_and_complete():
    completed = config("docker-compose.yml", env=SECRETS)
    assert completed.returncode == 0, completed.stderr
    services = yaml.safe_load(completed.stdout)["services"]
    assert {"redis", "postgres", "migrate", "worker", "flower", "enqueue", "beat", "trainer"} <= set(services)
    assert services["trainer"]["command"] == ["screen", "worker", "--queues", "training"]
    assert "--appendonly" in services["redis"]["command"]
    for name in SCREENING_SERVICES:
        service = services[name]
        environment = service["environment"]
        assert environment["SCREEN_BROKER_URL"] == "redis://:redis-secret@redis:6379/0"
        assert (
            environment["SCREEN_DATABASE_URL"]
            == "postgresql+psycopg://screening:postgres-secret@postgres:5432/screening"
        )
        assert any("screening-data" in str(volume) for volume in service["volumes"])  # artifacts seen by all
        assert "/srv/studies:/studies:ro" in service["volumes"]  # enqueue records the paths workers read
        assert service["user"] == "10001:10001"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["listener"]["command"][:2] == ["screen", "listen"] and services["listener"]["ports"]
    assert services["listener"]["environment"]["SCREEN_DICOM_ALLOWED_AES"] == "PACS"
    assert services["web"]["environment"]["SCREEN_WEB_TOKEN"] == "web-secret-of-some-length"
    (web,) = services["web"]["ports"]
    assert str(web.get("host_ip", web) if isinstance(web, dict) else web).startswith("127.0.0.1")


def test_compose_keeps_secrets_out_of_the_file_and_the_network():
    text = (REPOSITORY / "docker-compose.yml").read_text()
    assert "screening:screening@" not in text and "POSTGRES_PASSWORD: screening" not in text
    services = yaml.safe_load(config("docker-compose.yml", env=SECRETS).stdout)["services"]
    assert services["redis"]["command"][-2:] == ["--requirepass", "redis-secret"]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "admin:flower-secret"
    (published,) = services["flower"]["ports"]
    assert str(published.get("host_ip", published) if isinstance(published, dict) else published).startswith(
        "127.0.0.1"
    )
    assert "USER screening" in (REPOSITORY / "Dockerfile").read_text()


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing):
    completed = config("docker-compose.yml", env={k: v for k, v in SECRETS.items() if k != missing})
    assert completed.returncode != 0 and missing in completed.stderr


def test_gpu_override_reserves_a_device_and_runs_jax_in_bfloat16():
    completed = config("docker-compose.yml", "docker-compose.gpu.yml", env=SECRETS)
    assert completed.returncode == 0, completed.stderr
    worker = yaml.safe_load(completed.stdout)["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    environment = worker["environment"]
    assert environment["KERAS_BACKEND"] == "jax" and environment["SCREEN_DTYPE_POLICY"] == "mixed_bfloat16"
    assert environment["SCREEN_DEVICE"] == "gpu" and int(environment["SCREEN_BATCH_SIZE"]) >= 256
    assert worker["build"]["args"]["EXTRAS"] == "gpu"
