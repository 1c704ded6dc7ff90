"""Checkpoints: all learned state saved atomically and restored on start.

One file, ``<state.directory>/checkpoint.bin``, holds everything the process
learned (every detector's ``state_dict()``, the alert lifecycle, deployments,
the hash salt's fingerprint). Layout::

    MAGIC (8 bytes b"OTANCKPT")
    header length   (4 bytes, big-endian unsigned)
    header          (UTF-8 JSON: format, versions, payload length and SHA-256)
    header SHA-256  (32 bytes over the header bytes)
    payload         (pickle, protocol 5)

:func:`load` checks, in order, the magic, the header digest, the format
version, the package / river / Python versions and the feature schema, then
the payload length and the payload's SHA-256 — all *before* unpickling — so
a truncated, partial, bit-flipped or incompatible file is refused with one
clear log line (and ``otel_anomaly_checkpoint_restore_failures_total`` + 1)
and the process starts cold instead of crashing.

:func:`save` writes atomically the way POSIX allows (see ``rename(2)``): a
temporary file in the same directory, ``fsync`` of the file, ``rename`` over
the old checkpoint, ``fsync`` of the directory. A reader therefore sees the
old complete file or the new complete file, never a partial one; a crash
(``kill -9``, power loss) in the middle leaves at worst a stale ``*.tmp``
file, removed on the next start.

Trust boundary (pickle)
-----------------------
The payload is a Python pickle: **loading a pickle runs code chosen by whoever
wrote the file** (Python docs, ``pickle`` — "Warning: The pickle module is not
secure"). The state directory therefore belongs to the operator: it must be
writable only by the user otel-anomaly runs as, exactly like its config file.
The SHA-256 in the header detects corruption, not tampering (anyone who can
write the file can write a matching digest). To narrow the door, the process
creates the directory ``0700`` and checkpoints ``0600``, and :func:`load`
refuses a checkpoint that is group/world-writable or owned by another user.
Never point ``state.directory`` at a location other users can write, and
never load a checkpoint from an untrusted source.

Version stamps
--------------
river's Rust-backed objects (``stats.EWMean``, ``drift.ADWIN`` …) pickle to
opaque state and detectors change their state layout over time, so each
checkpoint carries the package version, the river version, the Python
``major.minor`` and a *feature schema* string (see :func:`feature_schema`).
Any mismatch is an incompatible checkpoint: refused with a message naming
both values, cold start. (river's own ``tests/base/test_pickle_version.py``
follows the same rule: pickles are only valid for the version that wrote them.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import secrets
import stat
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from detector import __version__

log = logging.getLogger("detector.state")

MAGIC = b"OTANCKPT"
FORMAT_VERSION = 1
FILENAME = "checkpoint.bin"
SALT_FILENAME = "salt"
PICKLE_PROTOCOL = 5
_MAX_HEADER = 64 * 1024
_DIGEST_LEN = 32


class CheckpointError(Exception):
    """A checkpoint could not be used; ``str(err)`` is the one-line reason."""


def river_version() -> str:
    """Installed river version, ``"none"`` when river is not importable."""
    try:
        import river

        return str(getattr(river, "__version__", "unknown"))
    except Exception:  # pragma: no cover - river is a hard dependency
        return "none"


def python_version() -> str:
    """``"3.11"``: pickles of builtin types are stable within a minor version."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def feature_schema(components: Mapping[str, Any]) -> str:
    """The feature schema string stamped in a checkpoint.

    ``components`` maps a state key (``"error_rate"``, ``"alerts"`` …) to the
    object whose ``state_dict()`` is saved under it. Each may declare a class
    attribute ``STATE_VERSION`` (int; else its module's ``STATE_VERSION``;
    default 1) that its owner bumps whenever the layout of its
    ``state_dict()`` changes incompatibly. Returns e.g.
    ``"alerts=1;auth=2;error_rate=1"`` (sorted, so order does not matter).
    A plain ``int`` value is taken as the version itself.
    """
    parts = []
    for name in sorted(components):
        obj = components[name]
        if isinstance(obj, int):
            version = obj
        else:
            module = sys.modules.get(type(obj).__module__)
            version = getattr(obj, "STATE_VERSION", getattr(module, "STATE_VERSION", 1))
        parts.append(f"{name}={version}")
    return ";".join(parts)


@dataclass(frozen=True)
class CheckpointMeta:
    """The compatibility stamp of a checkpoint.

    Attributes:
        package_version: ``detector.__version__`` of the writer.
        river_version: ``river.__version__`` of the writer.
        python_version: ``"major.minor"`` of the writer.
        feature_schema: see :func:`feature_schema`.
        format_version: layout of the file itself (:data:`FORMAT_VERSION`).
    """

    package_version: str
    river_version: str
    python_version: str
    feature_schema: str
    format_version: int = FORMAT_VERSION

    @classmethod
    def current(cls, feature_schema: str = "") -> "CheckpointMeta":
        """The stamp this process writes and accepts."""
        return cls(__version__, river_version(), python_version(), feature_schema)

    def incompatibility(self, other: "CheckpointMeta") -> str | None:
        """Why a checkpoint stamped ``other`` cannot be loaded by ``self``; None when compatible.

        The feature schema is compared per component: a component present on
        only one side (a detector enabled or disabled since) is compatible —
        its state is simply absent or ignored; a component whose
        ``STATE_VERSION`` differs is not.
        """
        problems = []
        for name in ("format_version", "package_version", "river_version", "python_version"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                problems.append(f"{name} {theirs!r} in checkpoint, {mine!r} here")
        mine_s, theirs_s = _parse_schema(self.feature_schema), _parse_schema(other.feature_schema)
        if mine_s is None or theirs_s is None:
            if self.feature_schema != other.feature_schema:
                problems.append(f"feature_schema {other.feature_schema!r} in checkpoint, {self.feature_schema!r} here")
        else:
            for comp in sorted(set(mine_s) & set(theirs_s)):
                if mine_s[comp] != theirs_s[comp]:
                    problems.append(f"feature_schema {comp}={theirs_s[comp]!r} in checkpoint, {comp}={mine_s[comp]!r} here")
        return "; ".join(problems) or None


def _parse_schema(text: str) -> dict[str, str] | None:
    """``"a=1;b=2"`` -> ``{"a": "1", "b": "2"}``; ``{}`` for ``""``; None when not in that form."""
    if not text:
        return {}
    out = {}
    for part in text.split(";"):
        name, eq, version = part.partition("=")
        if not eq or not name:
            return None
        out[name] = version
    return out


@dataclass
class LoadResult:
    """What :func:`load` found: the state (None on cold start) and why."""

    state: dict | None
    reason: str = ""
    meta: dict = field(default_factory=dict)
    failed: bool = False  # a file was there but could not be restored (not a first start)


def checkpoint_path(directory: str | os.PathLike) -> Path:
    """``<directory>/checkpoint.bin``."""
    return Path(directory) / FILENAME


def encode(state: Mapping[str, Any], meta: CheckpointMeta, created_at: float | None = None) -> bytes:
    """Serialise ``state`` with its header; the bytes :func:`save` writes.

    Raises:
        pickle.PicklingError: when the state holds an unpicklable object (a
            lambda, a lock, an open file …); the message names the state key.
    """
    try:
        payload = pickle.dumps(dict(state), protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        culprit = _find_unpicklable(state)
        raise pickle.PicklingError(f"checkpoint state is not picklable{culprit}: {type(exc).__name__}: {exc}") from exc
    header = dict(asdict(meta))
    header.update(
        created_at=time.time() if created_at is None else created_at,
        payload_length=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        keys=sorted(str(k) for k in state),
    )
    hbytes = json.dumps(header, sort_keys=True).encode("utf-8")
    return b"".join(
        (MAGIC, len(hbytes).to_bytes(4, "big"), hbytes, hashlib.sha256(hbytes).digest(), payload)
    )


def _find_unpicklable(state: Mapping[str, Any]) -> str:
    for key, value in state.items():
        try:
            pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception:
            return f" (key {key!r})"
    return ""


def decode(data: bytes, expect: CheckpointMeta | None = None) -> tuple[dict, dict]:
    """Check and unpickle bytes written by :func:`encode`.

    Returns ``(state, header)``. ``expect`` is the stamp this process accepts
    (default: :meth:`CheckpointMeta.current` with the file's own feature schema,
    i.e. the schema is not checked).

    Raises:
        CheckpointError: bad magic, truncated, checksum mismatch, incompatible
            versions, or a payload that does not unpickle to a dict.
    """
    view = memoryview(data)
    if len(data) < len(MAGIC) + 4:
        raise CheckpointError(f"file too short ({len(data)} bytes): truncated or empty")
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise CheckpointError("not an otel-anomaly checkpoint (bad magic bytes)")
    pos = len(MAGIC)
    hlen = int.from_bytes(view[pos : pos + 4], "big")
    pos += 4
    if hlen > _MAX_HEADER:
        raise CheckpointError(f"header length {hlen} is implausible: corrupt file")
    if len(data) < pos + hlen + _DIGEST_LEN:
        raise CheckpointError("truncated inside the header")
    hbytes = bytes(view[pos : pos + hlen])
    pos += hlen
    if hashlib.sha256(hbytes).digest() != bytes(view[pos : pos + _DIGEST_LEN]):
        raise CheckpointError("header checksum mismatch: corrupt file")
    pos += _DIGEST_LEN
    try:
        header = json.loads(hbytes)
        theirs = CheckpointMeta(
            package_version=str(header["package_version"]),
            river_version=str(header["river_version"]),
            python_version=str(header["python_version"]),
            feature_schema=str(header["feature_schema"]),
            format_version=int(header["format_version"]),
        )
        length = int(header["payload_length"])
        digest = str(header["payload_sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"unreadable header: {exc}") from exc
    if expect is None:
        expect = CheckpointMeta.current(theirs.feature_schema)
    why = expect.incompatibility(theirs)
    if why:
        raise CheckpointError(f"incompatible checkpoint ({why})")
    payload = view[pos:]
    if len(payload) != length:
        raise CheckpointError(f"payload is {len(payload)} bytes, header says {length}: truncated or partial file")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError("payload checksum mismatch: corrupt file (bit flip or partial write)")
    try:
        state = pickle.loads(payload)
    except Exception as exc:  # a valid digest over an unloadable pickle: a class went away
        raise CheckpointError(f"payload does not unpickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"payload is a {type(state).__name__}, expected a dict")
    return state, header


def ensure_directory(directory: str | os.PathLike) -> Path:
    """Create ``directory`` (and parents) with mode ``0700`` if missing; return it as a Path."""
    path = Path(directory)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Temp file in the same directory (``O_EXCL``, ``mode``), write, ``fsync``,
    ``os.replace`` (``rename(2)``: atomic within one filesystem), ``fsync`` of
    the directory so the rename itself survives a crash.

    Raises:
        OSError: the directory is missing or not writable, disk full …
            (the temp file is removed).
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def save(directory: str | os.PathLike, state: Mapping[str, Any], meta: CheckpointMeta | None = None) -> int:
    """Write ``state`` as the checkpoint in ``directory``; returns the file size in bytes.

    Creates the directory (``0700``) when missing. ``meta`` defaults to
    :meth:`CheckpointMeta.current` with an empty feature schema.

    Raises:
        OSError: cannot write (the previous checkpoint stays intact).
        pickle.PicklingError: unpicklable state.
    """
    data = encode(state, meta or CheckpointMeta.current())
    path = checkpoint_path(ensure_directory(directory))
    write_atomic(path, data)
    return len(data)


def _owner_problem(path: Path, st: os.stat_result) -> str | None:
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group/others (mode {stat.S_IMODE(st.st_mode):o}); pickles run code on load, so it is not trusted (chmod 600 it if you wrote it)"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid() and os.geteuid() != 0:
        return f"{path} is owned by uid {st.st_uid}, not by this process (uid {os.geteuid()}); not trusted"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike) -> int:
    """Delete ``.checkpoint.bin.<pid>.*.tmp`` / ``.salt.*`` left by a crash mid-write.

    Call at start-up, before this process writes anything: temps of this pid
    (a container restarting as pid 1) and of dead pids are removed; temps of
    another live process are left alone. Returns how many were removed.
    """
    n = 0
    me = os.getpid()
    try:
        for p in Path(directory).glob(".*.tmp"):
            parts = p.name.split(".")
            try:
                pid = int(parts[-4])
            except (IndexError, ValueError):
                continue
            if pid != me and _pid_alive(pid):
                continue
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def load_result(
    directory: str | os.PathLike | None,
    expect: CheckpointMeta | None = None,
    metrics: Any = None,
    logger: logging.Logger | None = None,
) -> LoadResult:
    """Like :func:`load` but also says why; never raises for file problems.

    A missing directory or file is a normal first start (INFO line, no
    failure metric). Anything else that prevents a restore is a failure:
    one WARNING line naming the path and the reason, and
    ``metrics.checkpoint_restore_failures`` + 1 (``metrics`` is a
    :class:`~detector.expose.metrics.SelfMetrics` or None).
    """
    logger = logger or log
    if directory is None:
        return LoadResult(None, "state.directory is null: nothing is kept across restarts")
    directory = Path(directory)
    path = checkpoint_path(directory)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            problem = _owner_problem(path, st)
            if problem:
                raise CheckpointError(problem)
            data = f.read()
    except FileNotFoundError:
        reason = f"no checkpoint at {path}: cold start"
        logger.info(reason)
        return LoadResult(None, reason)
    except (OSError, CheckpointError) as exc:
        return _failed(path, str(exc), metrics, logger)
    try:
        state, header = decode(data, expect)
    except CheckpointError as exc:
        return _failed(path, str(exc), metrics, logger)
    except Exception as exc:  # belt and braces: never crash on a bad file
        return _failed(path, f"{type(exc).__name__}: {exc}", metrics, logger)
    age = time.time() - float(header.get("created_at", time.time()))
    logger.info(
        "restored checkpoint %s (%d bytes, written %.0f s ago by otel-anomaly %s)",
        path, len(data), age, header.get("package_version"),
    )
    return LoadResult(state, "restored", header)


def _failed(path: Path, reason: str, metrics: Any, logger: logging.Logger) -> LoadResult:
    msg = f"checkpoint {path} not restored, starting cold: {reason}"
    logger.warning(msg)
    if metrics is not None:
        metrics.checkpoint_restore_failures.inc()
    return LoadResult(None, msg, failed=True)


REJECTED_SUFFIX = ".rejected"


def set_aside(directory: str | os.PathLike) -> Path | None:
    """Rename a checkpoint that could not be restored to ``checkpoint.bin.rejected``.

    Without this the first checkpoint of the cold-started process overwrites
    it: the evidence of what went wrong is gone, and so is the learned state a
    rollback to the version that wrote it could still have used (an upgrade
    whose new version refuses the old file, then a rollback, started cold
    twice). One rejected file is kept (a newer rejection replaces it).
    Returns the new path, or None when there was nothing to move.
    """
    path = checkpoint_path(directory)
    target = path.with_name(FILENAME + REJECTED_SUFFIX)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("could not keep the refused checkpoint %s as %s: %s", path, target.name, exc.strerror or exc)
        return None
    _fsync_dir(Path(directory))
    return target


def load(
    directory: str | os.PathLike | None,
    expect: CheckpointMeta | None = None,
    metrics: Any = None,
    logger: logging.Logger | None = None,
) -> dict | None:
    """The state saved by :func:`save`, or None (cold start). Never raises for file problems.

    See :func:`load_result` for logging and metrics. ``expect`` is the stamp
    this process accepts (default: current versions, feature schema unchecked).
    """
    return load_result(directory, expect, metrics, logger).state


def load_or_create_salt(directory: str | os.PathLike | None, configured: str | bytes | None = None) -> bytes:
    """The secret salt of :class:`~detector.detectors.base.IdentityHasher`.

    Order: ``configured`` (the ``state.hash_salt`` key) when given; else
    ``<directory>/salt`` when it exists (32 random bytes written once, ``0600``,
    atomically, and kept apart from the checkpoint so hashes stay stable even
    after a cold start); else a new random salt, persisted when ``directory``
    is set. With no directory the salt lives only as long as the process.

    Raises:
        OSError: only when the directory exists but the salt file cannot be
            written (a real operator problem worth failing start-up for).
    """
    if configured:
        return configured.encode("utf-8") if isinstance(configured, str) else bytes(configured)
    if directory is None:
        return secrets.token_bytes(32)
    path = Path(directory) / SALT_FILENAME
    try:
        data = path.read_bytes()
        if len(data) >= 16:
            return data
        log.warning("salt file %s is too short (%d bytes); generating a new salt", path, len(data))
    except FileNotFoundError:
        pass
    salt = secrets.token_bytes(32)
    write_atomic(ensure_directory(directory) / SALT_FILENAME, salt)
    return salt


class Checkpointer:
    """Saves learned state every ``interval`` seconds and on demand.

    The state must be gathered on the thread that owns it (the single analysis
    worker): call :meth:`tick` from that thread between batches / after window
    closes. When due, :meth:`tick` calls ``collect()`` and pickles the result
    on the calling thread (a consistent snapshot; cost ≈ pickle time), then
    the file write and fsyncs happen on a background writer thread, so the
    worker does not wait for the disk. :meth:`save_now` does the whole thing
    synchronously (SIGTERM, after the queue is drained).

    Args:
        directory: ``state.directory``; None disables saving (every call is a no-op).
        interval: seconds between periodic saves (``state.checkpoint_interval``).
        collect: returns the state to save (``{"error_rate": {...}, ...}``).
        meta: the stamp to write; default :meth:`CheckpointMeta.current`.
        metrics: a ``SelfMetrics`` (``otel_anomaly_checkpoint_seconds`` observed per save).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        directory: str | os.PathLike | None,
        interval: float,
        collect: Callable[[], Mapping[str, Any]],
        meta: CheckpointMeta | None = None,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.interval = float(interval)
        self.collect = collect
        self.meta = meta or CheckpointMeta.current()
        self.metrics = metrics
        self.clock = clock
        self.log = logger or log
        self._last = clock()
        self._lock = threading.Lock()  # serialises file writes
        self._pending: threading.Thread | None = None
        self.saves = 0
        self.failures = 0
        self.last_size = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def restore(self) -> dict | None:
        """:func:`load` from :attr:`directory` with this checkpointer's stamp.

        Also removes temp files a crash mid-write left behind (call before the
        first save).
        """
        if self.directory is None:
            return None
        remove_stale_temps(self.directory)
        result = load_result(self.directory, self.meta, self.metrics, self.log)
        if result.failed:
            self.set_aside()
        return result.state

    def set_aside(self) -> Path | None:
        """Keep a checkpoint that could not be restored as ``checkpoint.bin.rejected`` (see :func:`set_aside`);
        logs where it went."""
        if self.directory is None:
            return None
        target = set_aside(self.directory)
        if target is not None:
            self.log.info("the refused checkpoint is kept as %s (the next checkpoint would overwrite it)", target)
        return target

    def due(self) -> bool:
        """True when ``interval`` seconds passed since the last save (or start)."""
        return self.enabled and self.clock() - self._last >= self.interval

    def tick(self) -> bool:
        """Snapshot and start a background write if due; returns True when one started.

        Skips (returns False) while the previous background write is still running.
        Never raises: a failure is logged and counted, the next interval retries.
        """
        if not self.due():
            return False
        if self._pending is not None and self._pending.is_alive():
            return False
        self._last = self.clock()
        started = time.perf_counter()
        try:
            data = encode(self.collect(), self.meta)
        except Exception as exc:
            self._record_failure(f"could not serialise state: {type(exc).__name__}: {exc}")
            return False
        pickled = time.perf_counter() - started
        self._pending = threading.Thread(
            target=self._write, args=(data, pickled), name="otel-anomaly-checkpoint", daemon=True
        )
        self._pending.start()
        return True

    def save_now(self) -> bool:
        """Snapshot and write synchronously (call from the owning thread). True on success."""
        if not self.enabled:
            return False
        self.wait()
        self._last = self.clock()
        started = time.perf_counter()
        try:
            data = encode(self.collect(), self.meta)
        except Exception as exc:
            self._record_failure(f"could not serialise state: {type(exc).__name__}: {exc}")
            return False
        return self._write(data, time.perf_counter() - started)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background write to finish (shutdown)."""
        pending = self._pending
        if pending is not None:
            pending.join(timeout)

    def _write(self, data: bytes, already: float) -> bool:
        started = time.perf_counter()
        assert self.directory is not None
        with self._lock:
            try:
                ensure_directory(self.directory)
                write_atomic(checkpoint_path(self.directory), data)
            except OSError as exc:
                self._record_failure(f"could not write {checkpoint_path(self.directory)}: {exc}")
                return False
        seconds = already + time.perf_counter() - started
        self.saves += 1
        self.last_size = len(data)
        self.last_error = None
        if self.metrics is not None:
            self.metrics.checkpoint_seconds.observe(seconds)
        self.log.debug("checkpoint written: %d bytes in %.3f s", len(data), seconds)
        return True

    def _record_failure(self, reason: str) -> None:
        self.failures += 1
        self.last_error = reason
        self.log.error("checkpoint not saved: %s", reason)
