"""Chest X-ray pneumonia screening: folders of radiographs in, a results table out.

Data flows cli -> queue/worker -> imaging -> model -> db; no module imports one
further up that line. `training` reuses imaging and model.
"""

__version__ = "0.1.0"
