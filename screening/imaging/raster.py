"""JPEG and PNG: size checked from the header before any pixel is decoded, truncation refused."""

from __future__ import annotations

import io

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from screening.imaging.errors import NotScreenable, Unreadable

JPEG_START_OF_SCAN = b"\xff\xda"
JPEG_END_OF_IMAGE = b"\xff\xd9"


def _header_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as header:  # parses the header only; decodes nothing
            width, height = header.size
    except Image.DecompressionBombError as error:
        raise NotScreenable(f"image too large to decode safely ({error})") from None
    except Exception as error:  # Pillow raises many types for a broken header
        raise Unreadable(f"corrupt or truncated image header ({type(error).__name__})") from None
    if width * height > max_pixels:
        raise NotScreenable(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels}")
    return width, height


def _check_complete(data: bytes, kind: str) -> None:
    # Entropy-coded JPEG data cannot contain FFD9, so a complete file has its EOI after the last scan.
    if kind == "jpeg" and data.rfind(JPEG_END_OF_IMAGE) < data.rfind(JPEG_START_OF_SCAN):
        raise Unreadable("truncated JPEG: no end-of-image marker after the last scan")
    if kind == "png" and b"IEND" not in data[-16:]:
        raise Unreadable("truncated PNG: no IEND chunk at the end")


def decode_jpeg_strict(data: bytes) -> np.ndarray:
    """libjpeg-turbo in strict mode: a warning about corrupt data (scrambled entropy-coded segments decode
    "successfully" into garbage) is an error, not a line on stderr."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)[:, :, 0]
    except ValueError as error:
        raise Unreadable(f"corrupt JPEG data: {_decoder_message(error)}") from None


def _decoder_message(error: Exception) -> str:
    return str(error).strip().rstrip(".")[:120] or type(error).__name__


def read_raster(data: bytes, kind: str, max_pixels: int) -> np.ndarray:
    """Decode a JPEG or PNG to one grayscale channel in its own depth (8 bits, or 16 for such PNGs)."""
    _header_size(data, max_pixels)
    _check_complete(data, kind)
    if kind == "jpeg":
        return decode_jpeg_strict(data)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if pixels is None:
        raise Unreadable(f"corrupt {kind.upper()} data: the decoder rejected it")
    return pixels
