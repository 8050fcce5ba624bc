"""Chest X-ray pneumonia screening: folders of radiographs in, a probability and a flag per image and study out.

Data flows cli/tasks -> usecases -> queue/worker/training -> imaging -> model -> db, and no module
imports one earlier on that line (tests/test_imports.py checks it). config, errors and hashing are
shared by all.
"""

__version__ = "0.1.0"
