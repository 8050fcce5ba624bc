"""The house's rules on imports: data flows one way, the edges only call use cases, no backend before the fork."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "screening"
PROBE = "import sys, screening.cli.main, screening.tasks; print({'keras', 'tensorflow'} & set(sys.modules))"
# cli -> usecases -> queue/worker -> imaging -> model -> db: a package may import those after it, never before.
# training is called by use cases and reuses imaging and model. config, errors, hashing, text and vocabulary are the
# floor.
LAYERS = {
    "cli": 0,
    "tasks": 0.5,  # `screen worker` starts the Celery edge
    "web": 0.5,  # `screen serve` starts the review app
    "usecases": 1,
    "queue": 2,
    "dicomnet": 2,
    "worker": 2,
    "training": 2,
    "imaging": 3,
    "model": 4,
    "db": 5,
    "config": 6,
    "errors": 6,
    "hashing": 6,
    "text": 6,
    "vocabulary": 6,
}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.split(".")[1] for name in names if name.startswith("screening.")}


def modules() -> list[Path]:
    return [path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts]


def layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    own = layer_of(path)
    if own == "__init__":
        return
    reaching_back = {name for name in imports_of(path) - {own} if LAYERS[name] <= LAYERS[own] and LAYERS[own] < 6}
    assert not reaching_back, f"{path.name} ({own}) imports {reaching_back}"


def test_the_edges_never_touch_the_database_directly():
    edges = [path for path in modules() if layer_of(path) in ("cli", "tasks", "web")]
    assert len(edges) >= 5
    for path in edges:
        assert not imports_of(path) & {"db", "worker", "training", "imaging", "dicomnet"}, path.name


def test_cli_and_worker_parent_import_no_backend():
    completed = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "set()"
