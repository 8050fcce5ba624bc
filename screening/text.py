"""Text from outside (file names, header values) shown to people as what it is: a newline, a tab or a right-to-left
override in a file name is shown as an escape, never obeyed, so one file is one row and `gpj.exe` reads as it is."""

from __future__ import annotations

import unicodedata

INVISIBLE = ("Cc", "Cf")  # control characters, and format characters (bidi overrides, zero-width joiners)


def visible(text: str) -> str:
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in INVISIBLE else ch for ch in text)
