"""The training recipe's settings: a module without Keras, so the CLI can check a --config file in an instant."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from screening.errors import InvalidRequest
from screening.model.preprocessing import SPECS
from screening.vocabulary import Population


@dataclass(frozen=True)
class TrainingConfig:
    validation_fraction: float = 0.2
    seed: int = 42
    target_sensitivity: float = 0.95
    # "pooled": the target on all validation images together; "every-source": on each labelled source
    # (by its top-level name), so a large source cannot buy the target while a small one misses it
    threshold_rule: str = "pooled"
    # leave out every image (labelled or out-of-scope) whose manifest gives a non-commercial licence
    commercial_use_only: bool = False
    # how much each labelled source (by its top-level name) weighs against the others, in training and in the
    # validation AUC that keeps epochs ({"adult": 3}: adults three times children); unnamed sources weigh 1
    source_weights: dict[str, float] = field(default_factory=dict)
    # phase 1: the head on frozen features
    epochs: int = 80
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 10
    # phase 2: fine-tuning from this backbone layer on (0 epochs: skip the phase)
    fine_tune_epochs: int = 0
    fine_tune_from: str = "conv5_block1_1_conv"
    fine_tune_learning_rate: float = 1e-5
    fine_tune_batch_size: int = 32
    fine_tune_patience: int = 3
    # 0: every training image once per epoch, weighted; N: N images drawn per epoch by their balancing weight
    fine_tune_images_per_epoch: int = 0
    rotation_degrees: float = 10.0
    shift: float = 0.05
    shear: float = 0.05
    zoom: float = 0.1
    horizontal_flip: bool = False
    # acquisition shift (another scanner, exposure or hospital): 0 turns each off
    brightness: float = 0.0  # up to this fraction of the range, up or down
    contrast: float = 0.0  # contrast scaled by 1 +- this
    gamma: float = 0.0  # gamma drawn from exp(+- this)
    blur_sigma: float = 0.0  # Gaussian blur (5 x 5) of up to this sigma, at most 1 (Keras' range)
    sharpness: float = 0.0  # sharpened or softened by up to this factor
    noise_std: float = 0.0  # Gaussian noise of this standard deviation (0-255 scale)
    label_smoothing: float = 0.0
    preprocessing: str = "cxr-seed-v1"  # a name in imaging.preprocess.SPECS
    learning_rate_schedule: str = "plateau"  # or "cosine": warm up for one epoch, then cosine decay to 0
    # an operating point per population: each source's population ({"kermany": "child", "adult": "adult"}), and
    # each population's target sensitivity (default target_sensitivity); empty: one point for every image
    populations: dict[str, str] = field(default_factory=dict)
    population_sensitivity: dict[str, float] = field(default_factory=dict)
    # folders of films of one population ({"../shared/data/cxr-fullres/train": "child"}) that the age-group estimate
    # is fitted on too: other sizes and formats of a population than its training source has
    estimate_folders: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any], ignore_unknown: bool = False) -> TrainingConfig:
        """Any of the fields above. An unknown name is an error unless `ignore_unknown` (a manifest's
        training_config also holds notes such as the phase and the data folder)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown and not ignore_unknown:
            raise InvalidRequest(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**{name: value for name, value in values.items() if name in known})

    def __post_init__(self) -> None:
        if self.preprocessing not in SPECS:
            raise InvalidRequest(f"preprocessing must be one of {', '.join(SPECS)}, not {self.preprocessing!r}")
        if not 0 <= self.blur_sigma <= 1:
            raise InvalidRequest(f"blur_sigma must be between 0 and 1, not {self.blur_sigma}")
        if self.threshold_rule not in ("pooled", "every-source"):
            raise InvalidRequest(f"threshold_rule must be pooled or every-source, not {self.threshold_rule!r}")
        named = set(self.populations.values()) | set(self.population_sensitivity) | set(self.estimate_folders.values())
        if not named <= {population.value for population in Population}:
            raise InvalidRequest(f"a population is child or adult, not {', '.join(sorted(named))}")
        if not all(weight > 0 for weight in self.source_weights.values()):
            raise InvalidRequest(f"a source weight is a positive number, not {self.source_weights}")
        if self.learning_rate_schedule not in ("plateau", "cosine"):
            raise InvalidRequest(
                f"learning_rate_schedule must be plateau or cosine, not {self.learning_rate_schedule!r}"
            )

    @property
    def phase(self) -> str:
        if self.fine_tune_epochs:
            return f"head on frozen features, then fine-tuned from {self.fine_tune_from}"
        return "frozen-backbone head"

    def estimate_folder_list(self) -> tuple[tuple[Population, Path], ...]:
        return tuple((Population(population), Path(folder)) for folder, population in self.estimate_folders.items())

    def population_targets(self) -> dict[Population, float]:
        """Each population's target sensitivity."""
        return {
            population: float(self.population_sensitivity.get(population.value, self.target_sensitivity))
            for population in Population
        }
