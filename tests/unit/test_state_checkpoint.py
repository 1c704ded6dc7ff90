"""Checkpoint file format, atomic writes, refusal of bad files (detector.state.checkpoint)."""

from __future__ import annotations

import logging
import os
import pickle
import random
import threading

import pytest
from prometheus_client import CollectorRegistry
from river import drift, stats

from detector.expose.metrics import SelfMetrics
from detector.state import checkpoint as ck


def _metrics() -> SelfMetrics:
    return SelfMetrics(CollectorRegistry())


def _failures(m: SelfMetrics) -> float:
    return m.registry.get_sample_value("otel_anomaly_checkpoint_restore_failures_total") or 0.0


def _learned_state() -> dict:
    ew = stats.EWMean(0.1)
    adwin = drift.ADWIN()
    rng = random.Random(7)
    for _ in range(500):
        x = rng.random()
        ew.update(x)
        adwin.update(x)
    return {
        "error_rate": {"series": {("checkout", "payment"): [1.0, 2.0, 3.0]}, "ew": ew, "adwin": adwin},
        "alerts": {"active": {"abc": {"opened": 12.5}}},
        "blob": bytes(range(256)) * 64,
    }


def test_round_trip_restores_identical_river_models(tmp_path):
    state = _learned_state()
    size = ck.save(tmp_path, state, ck.CheckpointMeta.current("alerts=1;error_rate=1"))
    assert size == (tmp_path / "checkpoint.bin").stat().st_size
    m = _metrics()
    restored = ck.load(tmp_path, ck.CheckpointMeta.current("alerts=1;error_rate=1"), metrics=m)
    assert restored is not None
    assert restored["error_rate"]["series"] == {("checkout", "payment"): [1.0, 2.0, 3.0]}
    assert restored["alerts"] == state["alerts"]
    assert restored["blob"] == state["blob"]
    # The restored models continue exactly where the saved ones were.
    for obj in (state, restored):
        obj["error_rate"]["ew"].update(0.9)
        obj["error_rate"]["adwin"].update(0.9)
    assert restored["error_rate"]["ew"].get() == state["error_rate"]["ew"].get()
    assert restored["error_rate"]["adwin"].estimation == state["error_rate"]["adwin"].estimation
    assert _failures(m) == 0
    # File and directory are private to the service user.
    assert (tmp_path / "checkpoint.bin").stat().st_mode & 0o777 == 0o600


def test_missing_directory_is_a_quiet_cold_start(tmp_path, caplog):
    m = _metrics()
    with caplog.at_level(logging.INFO, logger="detector.state"):
        assert ck.load(tmp_path / "nope", metrics=m) is None
    assert _failures(m) == 0
    assert "cold start" in caplog.text
    assert ck.load(None, metrics=m) is None


def test_save_creates_missing_directory_private(tmp_path):
    target = tmp_path / "a" / "b"
    ck.save(target, {"x": 1})
    assert ck.load(target) == {"x": 1}
    assert target.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("keep", [0, 5, 11, 40, 100, -1000, -1])
def test_truncated_file_is_refused_once_with_metric(tmp_path, caplog, keep):
    ck.save(tmp_path, _learned_state())
    path = tmp_path / "checkpoint.bin"
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    m = _metrics()
    with caplog.at_level(logging.INFO, logger="detector.state"):
        assert ck.load(tmp_path, metrics=m) is None
    assert _failures(m) == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "starting cold" in warnings[0].getMessage()
    assert str(path) in warnings[0].getMessage()


def test_every_single_bit_flip_is_detected(tmp_path):
    ck.save(tmp_path, {"a": list(range(50)), "b": "x" * 100})
    path = tmp_path / "checkpoint.bin"
    data = path.read_bytes()
    rng = random.Random(1)
    positions = list(range(len(data)))
    rng.shuffle(positions)
    m = _metrics()
    # every byte position of the header, a sample of the payload
    for n, pos in enumerate(sorted(set(positions[:150]) | set(range(0, 400)))):
        if pos >= len(data):
            continue
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (n % 8)
        path.write_bytes(bytes(flipped))
        assert ck.load(tmp_path, metrics=m) is None, f"flip at byte {pos} not detected"
    assert _failures(m) >= 150


def test_bit_flip_error_message_names_the_checksum(tmp_path, caplog):
    ck.save(tmp_path, {"a": 1})
    path = tmp_path / "checkpoint.bin"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="detector.state"):
        assert ck.load(tmp_path, metrics=_metrics()) is None
    assert "payload checksum mismatch" in caplog.text


@pytest.mark.parametrize(
    "field,value",
    [
        ("package_version", "0.0.1"),
        ("river_version", "0.21.0"),
        ("python_version", "3.10"),
        ("feature_schema", "error_rate=2"),
        ("feature_schema", "not a schema"),
        ("format_version", 99),
    ],
)
def test_incompatible_version_is_refused_with_both_values(tmp_path, caplog, field, value):
    here = ck.CheckpointMeta.current("error_rate=1")
    other = ck.CheckpointMeta(**{**here.__dict__, field: value})
    ck.save(tmp_path, {"a": 1}, other)
    m = _metrics()
    with caplog.at_level(logging.WARNING, logger="detector.state"):
        assert ck.load(tmp_path, here, metrics=m) is None
    assert _failures(m) == 1
    assert "incompatible checkpoint" in caplog.text
    if field == "feature_schema" and "=" in value:
        assert "error_rate='2' in checkpoint, error_rate='1' here" in caplog.text
    else:
        assert repr(value) in caplog.text and repr(getattr(here, field)) in caplog.text


def test_feature_schema_compares_shared_components_only(tmp_path):
    here = ck.CheckpointMeta.current("alerts=1;auth=1;error_rate=2")
    ck.save(tmp_path, {"a": 1}, ck.CheckpointMeta.current("alerts=1;error_rate=2;schema_drift=1"))
    assert ck.load(tmp_path, here) == {"a": 1}  # auth enabled / schema_drift disabled since: fine
    ck.save(tmp_path, {"a": 1}, ck.CheckpointMeta.current("alerts=1;error_rate=1"))
    assert ck.load(tmp_path, here) is None


def test_garbage_and_wrong_payload_type(tmp_path):
    path = tmp_path / "checkpoint.bin"
    path.write_bytes(b"hello world, definitely not a checkpoint")
    os.chmod(path, 0o600)
    m = _metrics()
    assert ck.load(tmp_path, metrics=m) is None
    # a consistent file whose payload is not a dict
    meta = ck.CheckpointMeta.current()
    data = ck.encode({"a": 1}, meta)
    payload = pickle.dumps([1, 2, 3])
    header_len = int.from_bytes(data[8:12], "big")
    import hashlib
    import json

    header = json.loads(data[12 : 12 + header_len])
    header.update(payload_length=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    hb = json.dumps(header).encode()
    path.write_bytes(ck.MAGIC + len(hb).to_bytes(4, "big") + hb + hashlib.sha256(hb).digest() + payload)
    assert ck.load(tmp_path, metrics=m) is None
    assert _failures(m) == 2


def test_group_writable_checkpoint_is_not_trusted(tmp_path, caplog):
    ck.save(tmp_path, {"a": 1})
    os.chmod(tmp_path / "checkpoint.bin", 0o666)
    m = _metrics()
    with caplog.at_level(logging.WARNING, logger="detector.state"):
        assert ck.load(tmp_path, metrics=m) is None
    assert "writable by group/others" in caplog.text
    assert _failures(m) == 1


def test_unpicklable_state_names_the_key(tmp_path):
    with pytest.raises(pickle.PicklingError, match="'schema_drift'"):
        ck.save(tmp_path, {"ok": 1, "schema_drift": {"f": lambda x: x}})
    assert not (tmp_path / "checkpoint.bin").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_concurrent_writes_never_expose_a_partial_file(tmp_path):
    """Writers replace the file continuously; every read sees one complete checkpoint."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(tag: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                ck.save(tmp_path, {"writer": tag, "i": i, "pad": bytes([tag]) * (50_000 + 997 * (i % 13))})
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ck.save(tmp_path, {"writer": -1, "i": 0, "pad": b""})
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    m = _metrics()
    seen = set()
    try:
        for _ in range(300):
            state = ck.load(tmp_path, metrics=m)
            assert state is not None
            assert state["pad"] == bytes([state["writer"]]) * len(state["pad"]) if state["writer"] >= 0 else True
            seen.add(state["writer"])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert _failures(m) == 0
    assert len(seen) >= 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_stale_temp_from_a_crash_is_removed(tmp_path):
    ck.save(tmp_path, {"a": 1})
    dead = 2**22 + 12345  # above the default pid_max: never a live process
    stale = tmp_path / f".checkpoint.bin.{dead}.456.abcd.tmp"
    stale.write_bytes(b"partial")
    live = tmp_path / f".checkpoint.bin.{os.getppid()}.456.abcd.tmp"
    live.write_bytes(b"another live writer")
    assert ck.Checkpointer(tmp_path, 60, dict).restore() == {"a": 1}
    assert not stale.exists()
    assert live.exists()


def test_salt_generated_once_and_persisted(tmp_path):
    s1 = ck.load_or_create_salt(tmp_path / "st")
    s2 = ck.load_or_create_salt(tmp_path / "st")
    assert s1 == s2 and len(s1) == 32
    assert (tmp_path / "st" / "salt").stat().st_mode & 0o777 == 0o600
    assert ck.load_or_create_salt(tmp_path / "st", "configured") == b"configured"
    assert ck.load_or_create_salt(None) != ck.load_or_create_salt(None)


def test_feature_schema_from_state_versions():
    class A:
        STATE_VERSION = 3

    assert ck.feature_schema({"b": object(), "a": A()}) == "a=3;b=1"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_checkpointer_saves_on_interval_and_observes_seconds(tmp_path):
    clock = FakeClock()
    m = _metrics()
    counter = {"n": 0}

    def collect() -> dict:
        counter["n"] += 1
        return {"n": counter["n"]}

    cp = ck.Checkpointer(tmp_path, 60.0, collect, metrics=m, clock=clock)
    assert not cp.tick()
    clock.t += 59
    assert not cp.tick()
    clock.t += 1
    assert cp.tick()
    cp.wait()
    assert ck.load(tmp_path) == {"n": 1}
    assert not cp.tick()  # interval restarts at the save
    assert cp.save_now()
    assert ck.load(tmp_path) == {"n": 2}
    assert cp.saves == 2
    assert m.registry.get_sample_value("otel_anomaly_checkpoint_seconds_count") == 2
    assert cp.restore() == {"n": 2}


def test_checkpointer_disabled_and_failing(tmp_path, caplog):
    cp = ck.Checkpointer(None, 1.0, lambda: {"a": 1})
    assert not cp.enabled and not cp.save_now() and not cp.tick()
    bad = ck.Checkpointer(tmp_path, 1.0, lambda: {"f": lambda: 0})
    with caplog.at_level(logging.ERROR, logger="detector.state"):
        assert not bad.save_now()
    assert bad.failures == 1 and "not picklable" in caplog.text
    blocked = tmp_path / "file"
    blocked.write_text("x")
    cp2 = ck.Checkpointer(blocked / "sub", 1.0, lambda: {"a": 1})
    assert not cp2.save_now()
    assert cp2.failures == 1
