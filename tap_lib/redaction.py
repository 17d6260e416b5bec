"""What tap never shows in full: values whose name looks secret, and untrusted input echoed in
messages (cut short, control characters escaped). One place, so errors, records, parameters
and tables mask the same way.
"""
from __future__ import annotations

import re
import reprlib
from typing import Any

# A setting, tag or parameter whose name matches holds a secret: its value is never shown.
SECRET_NAME = re.compile(r"password|secret|token|passphrase|key", re.IGNORECASE)
MASK = "***"
SHOWN_CHARS = 160           # an echoed value is cut to about this many characters


def scrub_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Mask the value of every parameter whose name looks like it holds a secret."""
    return {k: (MASK if SECRET_NAME.search(k) else v) for k, v in parameters.items()}


def shown(value: Any, name: str = "", *, secret: bool = False) -> Any:
    """An offending value as an error may echo it: itself when short, cut to about
    SHOWN_CHARS otherwise, and never the value of a setting whose name looks secret."""
    if value is None:
        return None
    if secret or SECRET_NAME.search(str(name).rsplit(".", 1)[-1]):
        return _Shown("<hidden: the setting's name looks secret>")
    if isinstance(value, (bool, float)):
        return value
    if isinstance(value, str) and len(value) <= SHOWN_CHARS:
        return value
    if isinstance(value, int) and value.bit_length() < 400:
        return value
    try:
        text = _REPR.repr(value)
    except ValueError:  # int too large to convert
        text = f"<an integer of about {value.bit_length() * 3 // 10} digits>"
    if isinstance(value, (str, bytes)):
        text += f" ({len(value)} characters)"
    return _Shown(shorten(text, SHOWN_CHARS + 40))


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more]"


def label(name: Any, limit: int = SHOWN_CHARS) -> str:
    """A name from the input (a key, a parameter) as a message may show it: control
    characters escaped (no terminal escape sequences), cut to `limit`."""
    text = str(name)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return shorten(text, limit)


class _Shown:
    """Stands for a value in an error message: its repr is the text given."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN_CHARS
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 8
_REPR.maxlevel = 3
