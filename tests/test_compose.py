"""docker-compose.yml is valid and wires every service to the same broker and database."""

import shutil
import subprocess

import yaml
from conftest import REPOSITORY


def compose_command() -> list[str]:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True) if shutil.which("docker") else None
    if plugin is not None and plugin.returncode == 0:
        return ["docker", "compose"]
    assert shutil.which("docker-compose"), (
        "neither `docker compose` nor `docker-compose` is installed (.ci/run installs it)"
    )
    return ["docker-compose"]


def test_compose_file_is_valid_and_complete():
    completed = subprocess.run(
        [*compose_command(), "--profile", "tools", "config"], cwd=REPOSITORY, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    config = yaml.safe_load(completed.stdout)
    services = config["services"]
    assert {"redis", "postgres", "migrate", "worker", "flower", "enqueue", "beat", "trainer"} <= set(services)
    assert services["trainer"]["command"] == ["screen", "worker", "--queues", "training"]
    assert "--appendonly" in services["redis"]["command"]
    for name in ("migrate", "worker", "flower", "enqueue", "beat", "trainer"):
        environment = services[name]["environment"]
        assert environment["SCREEN_BROKER_URL"] == "redis://redis:6379/0"
        assert environment["SCREEN_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert any(
            volume.endswith(":/var/lib/screening") or "screening-data" in str(volume)
            for volume in services[name]["volumes"]
        )  # retrained artifacts are visible to every worker
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
