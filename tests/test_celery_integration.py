"""Real Redis, real `screen worker` processes, SQLite and PostgreSQL, and Flower's HTTP API."""

import json
import subprocess

import pytest
import requests
from helpers import (
    REPOSITORY,
    SCREEN,
    assert_sample_folder_screened,
    count_results,
    free_port,
    run_screen,
    wait_until,
)


@pytest.fixture
def distributed_env(screen_env, database_url, redis_url):
    env = {**screen_env, "SCREEN_BROKER_URL": redis_url, "SCREEN_DATABASE_URL": database_url}
    run_screen(env, "db", "upgrade")
    return env


def test_worker_screens_a_batch_exactly_once(distributed_env, sample_folder, start_worker, database_url):
    worker = start_worker(distributed_env)
    run_screen(distributed_env, "enqueue", "--wait", str(sample_folder), timeout=300)
    assert_sample_folder_screened(distributed_env)
    assert count_results(database_url) == 11
    rerun = run_screen(distributed_env, "enqueue", "--wait", str(sample_folder), timeout=300)
    assert "11 already screened" in rerun.stdout and count_results(database_url) == 11
    log = worker.output()
    assert "succeeded" in log
    for path in sample_folder.rglob("*"):  # no PHI in logs: not even a file name
        assert path.name not in log


def test_without_migration_a_shared_database_is_refused(screen_env, redis_url, postgres_url):
    env = {**screen_env, "SCREEN_BROKER_URL": redis_url, "SCREEN_DATABASE_URL": postgres_url}
    from helpers import fresh_postgres_schema

    fresh_postgres_schema(postgres_url)
    refused = run_screen(env, "status", check=False)
    assert refused.returncode != 0 and "screen db upgrade" in refused.stderr


def test_flower_sees_the_worker_and_its_finished_tasks(screen_env, redis_url, sample_folder, start_worker, tmp_path):
    distributed_env = {**screen_env, "SCREEN_BROKER_URL": redis_url}  # Flower never touches the database
    start_worker(distributed_env, name="flowerwatched")
    port = free_port()
    env = {**distributed_env, "FLOWER_UNAUTHENTICATED_API": "true"}
    log = open(tmp_path / "flower.log", "w")
    flower = subprocess.Popen(
        SCREEN + ["flower", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY
    )
    try:
        base = f"http://127.0.0.1:{port}/api"
        workers = wait_until(
            lambda: (w := api(f"{base}/workers")) and any("flowerwatched" in n for n in w) and w, 120, 1, "worker seen"
        )
        assert any(name.startswith("flowerwatched@") for name in workers)
        run_screen(distributed_env, "enqueue", "--wait", str(sample_folder), timeout=300)
        tasks = wait_until(
            lambda: (t := api(f"{base}/tasks")) and all(task["state"] == "SUCCESS" for task in t.values()) and t,
            120,
            1,
            "tasks succeeded",
        )
        assert {task["name"] for task in tasks.values()} == {"screening.screen_chunk"}
        assert all(task["args"] == "[11 images]" for task in tasks.values())  # ids only, counted
        assert sum(json.loads(task["result"].replace("'", '"'))["items"] for task in tasks.values()) == 11
    finally:
        flower.terminate()
        try:
            flower.wait(15)
        except subprocess.TimeoutExpired:  # tornado sometimes ignores SIGTERM while a request is open
            flower.kill()
            flower.wait()
        log.close()


def api(url: str) -> dict | None:
    """Flower's JSON, or None while it is not answering yet."""
    try:
        return requests.get(url, timeout=5).json()
    except requests.RequestException:
        return None
