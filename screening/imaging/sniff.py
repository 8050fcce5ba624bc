"""Recognise images by their first bytes, never by file extension."""

from __future__ import annotations

SNIFF_BYTES = 132

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DICOM_MAGIC_OFFSET = 128  # DICOM Part 10: 128-byte preamble, then "DICM"


def sniff_kind(head: bytes) -> str | None:
    """Return 'jpeg', 'png', 'dicom', or None for anything else."""
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    return None
