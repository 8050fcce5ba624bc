"""The CLI and a worker's parent process load no Keras backend: the model loads after the fork."""

import subprocess
import sys

PROBE = "import sys, screening.cli.main, screening.worker.tasks; print({'keras', 'tensorflow'} & set(sys.modules))"


def test_cli_and_worker_parent_import_no_backend():
    completed = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "set()"
