"""``make bench``: run every ``tests/bench/bench_*.py`` (each updates its section of RESULTS.md).

Run: ``.venv/bin/python -m tests.bench.run_all [NAME ...]`` (names without ``bench_``, e.g. ``pipeline``).
Each benchmark runs in its own process, one after the other (the VM has 2 cores).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    mods = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if names:
        mods = [m for m in mods if m.removeprefix("bench_") in names or m in names]
    failed = []
    for mod in mods:
        print(f"== {mod}", flush=True)
        started = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", f"tests.bench.{mod}"], cwd=HERE.parents[1])
        print(f"== {mod}: exit {rc} in {time.monotonic() - started:.0f} s", flush=True)
        if rc:
            failed.append(mod)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
