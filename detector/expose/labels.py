"""Label values safe for exposition.

prometheus-client encodes the whole scrape as UTF-8; one lone surrogate
(``"\\udcff"``, what ``surrogateescape`` decoding leaves behind) makes the
entire ``/metrics`` response fail. Every label value built from telemetry
goes through :func:`label_value`.
"""

from __future__ import annotations

MAX_LABEL_CHARS = 128
"""Longest label value kept (characters); longer ones are cut and end in ``…``."""


def label_value(value: object, limit: int = MAX_LABEL_CHARS) -> str:
    """``value`` as a valid-UTF-8 string of at most ``limit`` characters.

    Unencodable code points (lone surrogates) become ``?``; control characters
    other than tab are replaced by U+FFFD.
    """
    s = value if isinstance(value, str) else str(value)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
    if not s.isprintable():
        s = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in s)
    return s
