"""Time-budgeted mutation fuzzer: ``python -m tests.fuzz.run`` (``make fuzz``).

Runs every target of :mod:`tests.fuzz.targets` in turn for an equal share of
``FUZZ_SECONDS`` (default 600; or ``--seconds``), starting from the seeds plus
the committed corpus, mutating inputs with :mod:`tests.fuzz.mutate`.

Reported failures (exit code 1 when any):

- **crash**: an exception outside the target's documented ones, or a broken
  output invariant. The input is written to ``tests/fuzz/corpus/<target>/
  crash-<sha>`` — commit it and it becomes a regression case
  (``tests/fuzz/test_fuzz_short.py`` replays the whole corpus).
- **hang**: one input running longer than ``--timeout`` seconds (default 10);
  a watchdog thread raises ``FuzzTimeout`` inside the stuck call, or exits the
  process with code 3 when that does not stop it. The input is saved first.
- **growth**: RSS after a target's run exceeds its RSS at 25 % of the run by
  more than ``--max-growth-mib`` (default 64) — unbounded growth.

Each target keeps a bounded pool of inputs (seeds, corpus, and mutants that
produced a not-yet-seen outcome: exception type/message class or a new record
count bucket) to mutate further.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import random
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.mutate import mutate_bytes
from tests.fuzz.targets import Target, all_targets, corpus_dir, corpus_files

POOL_MAX = 400


class FuzzTimeout(BaseException):
    """Raised asynchronously inside a call that exceeded the per-input timeout."""


def rss_mib() -> float:
    """Resident set size of this process, MiB (``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError):
        return 0.0


@dataclass
class Failure:
    kind: str  # crash | hang | growth
    target: str
    summary: str
    path: str | None = None
    detail: str = ""


@dataclass
class TargetStats:
    name: str
    execs: int = 0
    documented: int = 0
    seconds: float = 0.0
    rss_start: float = 0.0
    rss_warm: float = 0.0
    rss_end: float = 0.0
    slowest: float = 0.0
    outcomes: set = field(default_factory=set)


class Watchdog:
    """Interrupts the fuzzing thread when one input runs longer than ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._started: float | None = None
        self._thread_id: int | None = None
        self._on_hang = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, name="fuzz-watchdog", daemon=True)
        self._t.start()

    def arm(self, on_hang) -> None:
        with self._lock:
            self._started = time.monotonic()
            self._thread_id = threading.get_ident()
            self._on_hang = on_hang

    def disarm(self) -> None:
        with self._lock:
            self._started = None

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                started, tid, on_hang = self._started, self._thread_id, self._on_hang
            if started is None or time.monotonic() - started < self.timeout:
                continue
            on_hang()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(FuzzTimeout))
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                time.sleep(0.1)
                with self._lock:
                    if self._started is None or self._started != started:
                        break
            else:
                sys.stderr.write("fuzz: a hung call did not stop after the async exception; exiting\n")
                sys.stderr.flush()
                os._exit(3)


def _signature(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if "/detector/" in f.filename] or tb[-1:]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__}@{where}"


def save_input(target: str, data: bytes, kind: str) -> Path:
    """Write a failing input to ``corpus/<target>/<kind>-<sha12>``; returns the path."""
    d = corpus_dir() / target
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{kind}-{hashlib.sha256(data).hexdigest()[:12]}"
    path.write_bytes(data)
    return path


def run_one(target: Target, data: bytes) -> tuple[str, BaseException | None]:
    """Execute one input. Returns ``(outcome, crash)``: outcome is a short class string."""
    try:
        detail = target.execute(data)
        return (f"ok:{detail}" if isinstance(detail, str) else "ok"), None
    except target.documented as exc:
        return f"doc:{type(exc).__name__}:{str(exc)[:30]}", None
    except FuzzTimeout:
        raise
    except RecursionError as exc:
        return "crash", exc
    except Exception as exc:
        return "crash", exc


def fuzz_target(
    target: Target,
    seconds: float,
    rng: random.Random,
    watchdog: Watchdog,
    max_growth_mib: float,
    failures: list[Failure],
    verbose: bool = True,
    save: bool = True,
) -> TargetStats:
    """Fuzz ``target`` for ``seconds``; appends to ``failures``; returns its stats."""
    st = TargetStats(target.name)
    target.setup()
    try:
        pool: list[bytes] = list(target.seeds()) + [p.read_bytes() for p in corpus_files(target.name)]
        seen_crashes: set[str] = set()
        # replay the pool once (regressions first)
        start = time.monotonic()
        st.rss_start = rss_mib()
        warm_at = start + seconds * 0.25
        warm_taken = False
        current = {"data": b""}

        def on_hang() -> None:
            path = save_input(target.name, current["data"], "hang") if save else None
            failures.append(Failure("hang", target.name, f"input ran longer than {watchdog.timeout:g} s", str(path) if path else None))

        queue = list(pool)
        while True:
            now = time.monotonic()
            if now - start >= seconds and not queue:
                break
            if not warm_taken and now >= warm_at:
                st.rss_warm = rss_mib()
                warm_taken = True
            if queue:
                data = queue.pop()
            else:
                parent = rng.choice(pool)
                try:
                    data = target.mutate(rng, parent, pool)
                except (ValueError, RecursionError):  # the mutator choked on a hostile parent
                    data = mutate_bytes(rng, parent, pool)
            current["data"] = data
            t0 = time.monotonic()
            watchdog.arm(on_hang)
            try:
                outcome, crash = run_one(target, data)
            except FuzzTimeout:
                outcome, crash = "hang", None
            finally:
                watchdog.disarm()
            took = time.monotonic() - t0
            st.slowest = max(st.slowest, took)
            st.execs += 1
            if outcome.startswith("doc:"):
                st.documented += 1
            if crash is not None:
                sig = _signature(crash)
                if sig not in seen_crashes:
                    seen_crashes.add(sig)
                    path = save_input(target.name, data, "crash") if save else None
                    detail = "".join(traceback.format_exception(crash))[-3000:]
                    failures.append(Failure("crash", target.name, f"{sig}: {str(crash)[:200]}", str(path) if path else None, detail))
                    if verbose:
                        print(f"[{target.name}] CRASH {sig} -> {path}\n{detail}", file=sys.stderr)
                continue
            if outcome.startswith("ok"):
                outcome = f"{outcome}:{min(len(data).bit_length(), 24)}"
            if outcome not in st.outcomes:
                st.outcomes.add(outcome)
                if len(pool) < POOL_MAX:
                    pool.append(data)
                else:
                    pool[rng.randrange(len(pool))] = data
        st.seconds = time.monotonic() - start
        st.rss_end = rss_mib()
        if not warm_taken:
            st.rss_warm = st.rss_start
        growth = st.rss_end - st.rss_warm
        if growth > max_growth_mib:
            failures.append(Failure("growth", target.name, f"RSS grew {growth:.0f} MiB after warm-up ({st.rss_warm:.0f} -> {st.rss_end:.0f} MiB)"))
    finally:
        target.teardown()
    if verbose:
        print(
            f"[{target.name}] {st.execs} execs in {st.seconds:.1f} s ({st.execs / max(st.seconds, 1e-9):.0f}/s), "
            f"{st.documented} documented errors, {len(st.outcomes)} outcome classes, slowest {st.slowest * 1000:.0f} ms, "
            f"RSS {st.rss_start:.0f}/{st.rss_warm:.0f}/{st.rss_end:.0f} MiB",
            file=sys.stderr,
        )
    return st


def fuzz(
    seconds: float,
    names: list[str] | None = None,
    seed: int | None = None,
    timeout: float = 10.0,
    max_growth_mib: float = 64.0,
    verbose: bool = True,
    save: bool = True,
) -> tuple[list[Failure], list[TargetStats]]:
    """Fuzz the selected targets (all by default) for ``seconds`` in total."""
    targets = [t for t in all_targets() if not names or t.name in names]
    if not targets:
        raise SystemExit(f"no fuzz targets match {names}")
    seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
    if verbose:
        print(f"fuzz: seed {seed}, {seconds:g} s over {len(targets)} targets: {', '.join(t.name for t in targets)}", file=sys.stderr)
    rng = random.Random(seed)
    watchdog = Watchdog(timeout)
    failures: list[Failure] = []
    stats = []
    try:
        for t in targets:
            stats.append(fuzz_target(t, seconds / len(targets), rng, watchdog, max_growth_mib, failures, verbose, save))
    finally:
        watchdog.stop()
    return failures, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", "600")))
    ap.add_argument("--target", action="append", help="only this target (repeatable)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=10.0, help="per-input hang timeout, seconds")
    ap.add_argument("--max-growth-mib", type=float, default=64.0)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # the product logs per bad request at most; keep output readable
    failures, stats = fuzz(args.seconds, args.target, args.seed, args.timeout, args.max_growth_mib)
    total = sum(s.execs for s in stats)
    print(f"fuzz: {total} inputs, {len(failures)} failures", file=sys.stderr)
    for f in failures:
        print(f"  {f.kind} in {f.target}: {f.summary}" + (f" (input: {f.path})" if f.path else ""), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
