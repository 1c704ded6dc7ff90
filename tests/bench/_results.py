"""Writing one benchmark's section of ``tests/bench/RESULTS.md``.

Each ``bench_*.py`` owns the text between its ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers and rewrites only that, so benchmarks run at
different times keep each other's figures.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def replace_section(text: str, start: str, end: str, path: Path = RESULTS) -> None:
    """Put ``text`` (which begins with ``start`` and ends with ``end``) in place of
    the file's current section between those markers, or append it when absent."""
    body = text.rstrip("\n") + "\n"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in old and end in old:
        tail = old[old.index(end) + len(end):]
        new = old[: old.index(start)] + body + (tail[1:] if tail.startswith("\n") else tail)
    else:
        new = old.rstrip("\n") + "\n\n" + body
    path.write_text(new)
