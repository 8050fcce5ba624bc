"""A registered version as the code that scores with it reads it: a record made from the registry's row once,
its preprocessing spec parsed there, so no caller holds the row or parses its columns again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from screening.db.schema import ModelVersion
from screening.model.preprocessing import PreprocessSpec


@dataclass(frozen=True)
class RegisteredVersion:
    id: int
    name: str
    artifact_path: Path
    artifact_sha256: str
    threshold: float  # the version's own: with operating points per population, the more sensitive one's
    preprocessing: PreprocessSpec
    per_population: bool  # an operating point per population (else one for every image)

    @classmethod
    def of(cls, row: ModelVersion) -> RegisteredVersion:
        return cls(
            row.id,
            row.name,
            Path(row.artifact_path),
            row.artifact_sha256,
            row.threshold,
            PreprocessSpec.from_dict(row.preprocessing),
            bool(row.populations),
        )
