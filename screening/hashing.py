"""The one content hash of the product: files, bytes and decoded pixels are all named by their SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 2**20


def sha256_hex(*parts: bytes | memoryview | Path) -> str:
    """SHA-256 of the parts in order, as hex; a Path is read in 1 MiB blocks, so a large file costs 1 MiB."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            with open(part, "rb") as stream:
                for block in iter(lambda: stream.read(BLOCK), b""):  # noqa: B023 (used at once)
                    digest.update(block)
        else:
            digest.update(part)
    return digest.hexdigest()
