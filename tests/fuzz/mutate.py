"""Mutators for the fuzzers (deterministic given a ``random.Random``).

Three families:

- **bytes**: AFL-style havoc on the wire format (bit flips, interesting bytes,
  insert/delete/duplicate ranges, truncation, splicing, varint length bombs,
  fake nested length-delimited fields) — reaches the protobuf parser's error
  paths and the UTF-8 salvage path.
- **protobuf structure**: decode a seed, then change field values to hostile
  ones (invalid UTF-8, huge/empty strings, wrong-length or zero ids, extreme
  times, deep kvlist/array nesting, thousands of attributes, every enum value
  including unknown ones) and re-serialise — reaches the normaliser's logic
  with well-formed but adversarial messages.
- **text**: JSON trees (type swaps, deletions, huge numbers, deep nesting,
  bad hex/base64) and YAML (type swaps, unknown keys, tags, anchors/aliases,
  deep nesting, bad durations).
"""

from __future__ import annotations

import json
import random
from typing import Any

INTERESTING_8 = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x1A, 0x22, 0x2A, 0x08, 0x10]
INTERESTING_VARINTS = [
    b"\x00",
    b"\x7f",
    b"\xff\xff\xff\xff\x0f",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # over-long varint
]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mutate_bytes(rng: random.Random, data: bytes, corpus: list[bytes], rounds: int | None = None) -> bytes:
    """Apply 1..8 random byte-level mutations to ``data``."""
    buf = bytearray(data)
    for _ in range(rounds or rng.randint(1, 8)):
        op = rng.randrange(12)
        n = len(buf)
        if op == 0 and n:
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(INTERESTING_8)
        elif op == 2:
            i = rng.randrange(n + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and n:
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, 32)]
        elif op == 4 and n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 64))
            k = rng.randrange(n + 1)
            buf[k:k] = buf[i:j]
        elif op == 5 and n:
            del buf[rng.randrange(n) :]
        elif op == 6 and corpus:
            other = rng.choice(corpus)
            if other:
                i = rng.randrange(len(other))
                k = rng.randrange(n + 1)
                buf[k:k] = other[i : i + rng.randint(1, 256)]
        elif op == 7:
            # length-delimited field with a bogus (often huge) length
            field = rng.randint(1, 20)
            k = rng.randrange(n + 1)
            buf[k:k] = _varint((field << 3) | 2) + rng.choice(INTERESTING_VARINTS)
        elif op == 8:
            # a nested chain of length-delimited fields 1 (resource_spans → scope_spans → …)
            depth = rng.randint(1, 200)
            inner = rng.randbytes(rng.randint(0, 8))
            for _ in range(depth):
                inner = b"\x0a" + _varint(len(inner)) + inner
            k = rng.randrange(n + 1)
            buf[k:k] = inner
        elif op == 9 and n:
            # overwrite with a random varint / fixed64
            i = rng.randrange(n)
            val = rng.choice(INTERESTING_VARINTS + [rng.randbytes(8)])
            buf[i : i + len(val)] = val
        elif op == 10:
            # unknown field numbers with every wire type, including deprecated groups (3/4)
            wt = rng.randrange(8)
            k = rng.randrange(n + 1)
            buf[k:k] = _varint((rng.randint(1, 2**29 - 1) << 3) | wt) + rng.randbytes(rng.randint(0, 9))
        elif op == 11 and n > 1:
            # swap two ranges
            i, j = sorted(rng.sample(range(n), 2))
            buf[i], buf[j] = buf[j], buf[i]
    return bytes(buf)


# ----------------------------------------------------------------------------- protobuf structure

HOSTILE_STRINGS = [
    "",
    "\x00",
    "a" * 10_000,
    "\ud800",  # lone surrogate (cannot be set as proto string: used via bytes trick)
    "é" * 100,
    "service.name",
    "user.id",
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "\u202e\u2066",
    "🙂" * 50,
    "http.response.status_code",
]
HOSTILE_INTS = [0, 1, -1, 2**63 - 1, -(2**63), 2**31, 499, 500, 599, 401, 403, 16, 17, 99]
HOSTILE_TIMES = [0, 1, 2**64 - 1, 2**63, 10**18, 4_102_444_800_000_000_000, 1_767_225_600_000_000_000]
HOSTILE_IDS = [b"", b"\x00" * 16, b"\x00" * 8, b"\x01", b"\xff" * 32, b"\x01" * 15, b"\x01" * 8, b"\x01" * 16]


def _hostile_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.randrange(10)
    if r == 0 and depth < 40:
        return [_hostile_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if r == 1 and depth < 40:
        return {rng.choice(HOSTILE_STRINGS[:3] + ["a", "b", "user.id"]): _hostile_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if r == 2:
        return rng.choice(HOSTILE_INTS)
    if r == 3:
        return rng.choice([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-308, 1e308])
    if r == 4:
        return rng.choice([True, False])
    if r == 5:
        return rng.randbytes(rng.randint(0, 40))
    if r == 6:
        return None
    return rng.choice([s for s in HOSTILE_STRINGS if s != "\ud800"])


def _deep(depth: int, leaf: Any) -> Any:
    v = leaf
    for i in range(depth):
        v = {"k": v} if i % 2 else [v]
    return v


def mutate_trace_message(rng: random.Random, req) -> None:
    """Change an ``ExportTraceServiceRequest`` in place into a hostile but well-formed one."""
    from tests.unit._otlp_build import add_attrs

    spans = [sp for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(12)
        if op == 0 and spans:
            sp = rng.choice(spans)
            sp.trace_id = rng.choice(HOSTILE_IDS)
        elif op == 1 and spans:
            sp = rng.choice(spans)
            sp.span_id = rng.choice(HOSTILE_IDS)
            sp.parent_span_id = rng.choice(HOSTILE_IDS)
        elif op == 2 and spans:
            sp = rng.choice(spans)
            sp.start_time_unix_nano = rng.choice(HOSTILE_TIMES)
            sp.end_time_unix_nano = rng.choice(HOSTILE_TIMES)
        elif op == 3 and spans:
            sp = rng.choice(spans)
            sp.kind = rng.choice([0, 1, 2, 3, 4, 5, 6, 99, -1, 2**31 - 1])
            sp.status.code = rng.choice([0, 1, 2, 3, 77, -5])
        elif op == 4 and spans:
            add_attrs(rng.choice(spans).attributes, {rng.choice(HOSTILE_STRINGS[:3] + HOSTILE_STRINGS[4:]): _hostile_value(rng) for _ in range(rng.randint(1, 5))})
        elif op == 5 and spans:
            add_attrs(rng.choice(spans).attributes, {"deep": _deep(rng.randint(1, 90), "x")})
        elif op == 6 and spans:
            add_attrs(rng.choice(spans).attributes, {f"k{i}": i for i in range(rng.choice([100, 4097, 5000]))})
        elif op == 7 and req.resource_spans:
            rs = rng.choice(req.resource_spans)
            add_attrs(rs.resource.attributes, {"service.name": _hostile_value(rng), "service.version": _hostile_value(rng)})
        elif op == 8 and spans:
            add_attrs(rng.choice(spans).attributes, {
                rng.choice(["http.response.status_code", "http.status_code", "rpc.grpc.status_code", "rpc.response.status_code",
                            "user.id", "client.address", "http.request.header.x-forwarded-for", "peer.service", "http.route",
                            "session.id", "user_agent.original", "event.outcome", "server.address", "rpc.method"]): _hostile_value(rng)})
        elif op == 9 and spans:
            sp = rng.choice(spans)
            sp.name = rng.choice([s for s in HOSTILE_STRINGS if s != "\ud800"])
        elif op == 10:
            rs = req.resource_spans.add()
            ss = rs.scope_spans.add()
            for _ in range(rng.randint(0, 3)):
                sp = ss.spans.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8))
                sp.end_time_unix_nano = rng.choice(HOSTILE_TIMES)
        elif op == 11 and spans:
            ev = rng.choice(spans).events.add(name="exception")
            add_attrs(ev.attributes, {"exception.message": _hostile_value(rng)})


def mutate_logs_message(rng: random.Random, req) -> None:
    """Change an ``ExportLogsServiceRequest`` in place into a hostile but well-formed one."""
    from tests.unit._otlp_build import add_attrs, set_value

    recs = [lr for rl in req.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        if op == 0 and recs:
            lr = rng.choice(recs)
            lr.body.Clear()
            set_value(lr.body, rng.choice([_hostile_value(rng), _deep(rng.randint(1, 60), "x"),
                                            "Failed password for invalid user " + rng.choice(HOSTILE_STRINGS[:3]) + " from ::1 port 1 ssh2"]))
        elif op == 1 and recs:
            lr = rng.choice(recs)
            lr.severity_number = rng.choice([0, 1, 16, 17, 24, 25, 99, -3])
        elif op == 2 and recs:
            lr = rng.choice(recs)
            lr.time_unix_nano = rng.choice(HOSTILE_TIMES)
            lr.observed_time_unix_nano = rng.choice(HOSTILE_TIMES)
        elif op == 3 and recs:
            lr = rng.choice(recs)
            lr.trace_id = rng.choice(HOSTILE_IDS)
            lr.span_id = rng.choice(HOSTILE_IDS)
        elif op == 4 and recs:
            add_attrs(rng.choice(recs).attributes, {rng.choice(["user.name", "source.address", "event.outcome", "x"]): _hostile_value(rng)})
        elif op == 5 and req.resource_logs:
            add_attrs(rng.choice(req.resource_logs).resource.attributes, {"service.name": _hostile_value(rng)})
        elif op == 6:
            sl = req.resource_logs.add().scope_logs.add()
            for _ in range(rng.randint(0, 3)):
                sl.log_records.add(time_unix_nano=rng.choice(HOSTILE_TIMES))


# ----------------------------------------------------------------------------- JSON and YAML

def _json_hostile(rng: random.Random) -> Any:
    return rng.choice([
        None, True, 0, -1, 2**64, -(2**70), 1e309 if False else 1.5e300, "", "zz", "0" * 40, "ff" * 8, "ff" * 16,
        "not base64!", "18446744073709551616", "-5", "1e3", [], {}, [[[]]], {"a": {}}, "SPAN_KIND_SERVER",
        "STATUS_CODE_ERROR", "\u0000", "\ud800", "x" * 5000,
    ])


def mutate_json_tree(rng: random.Random, obj: Any, depth: int = 0) -> Any:
    """Return a mutated copy of a decoded JSON value."""
    if depth > 60:
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            r = rng.random()
            if r < 0.04:
                continue  # drop key
            if r < 0.08:
                out[k] = _json_hostile(rng)
                continue
            if r < 0.10:
                k = rng.choice([k.upper(), k + "_", "".join(reversed(k)), k.replace("Id", "_id")])
            out[k] = mutate_json_tree(rng, v, depth + 1)
        if rng.random() < 0.05:
            out[rng.choice(["extra", "resourceSpans", "resourceLogs", "resourceMetrics", "traceId", "kvlistValue"])] = _json_hostile(rng)
        return out
    if isinstance(obj, list):
        out = [mutate_json_tree(rng, v, depth + 1) for v in obj if rng.random() > 0.03]
        if out and rng.random() < 0.05:
            out.extend(out[: rng.randint(1, 3)])
        return out
    if rng.random() < 0.1:
        return _json_hostile(rng)
    return obj


def mutate_json_line(rng: random.Random, line: str, corpus: list[str]) -> str:
    """Mutate one OTLP/JSON line: structurally (mostly) or as raw text."""
    r = rng.random()
    if r < 0.6:
        try:
            return json.dumps(mutate_json_tree(rng, json.loads(line)))
        except (ValueError, RecursionError):
            return json.dumps(mutate_json_tree(rng, {}))
    if r < 0.7:
        depth = rng.randint(10, 3000)
        return '{"resourceSpans":' + "[" * depth + "]" * depth + "}"
    if r < 0.8 and corpus:
        other = rng.choice(corpus)
        return line[: rng.randrange(len(line) + 1)] + other[rng.randrange(len(other) + 1) :]
    data = mutate_bytes(rng, line.encode("utf-8"), [c.encode() for c in corpus])
    return data.decode("utf-8", "replace")


YAML_HOSTILE = [
    "null", "~", "true", "0", "-1", "1e999", ".nan", ".inf", "''", "'10'", "10", "10x", "1h30m", "-5s", "0s",
    "[]", "{}", "[1, [2, [3]]]", "!!binary aGVsbG8=", "!!python/object/apply:os.system ['echo pwned']",
    "!!python/name:os.system", "&a [*a]", "*undefined_alias", "'*'", "'['", "0o777", "0x1F", "2026-01-01",
    "\"\\x00\"", "'batch-*'", "99999999999999999999999", "'0.0.0.0:99999'", "'::1:4317'", "'a' * 3",
]


def mutate_yaml(rng: random.Random, text: str, corpus: list[str]) -> str:
    """Mutate config YAML: value swaps, key typos, hostile YAML features, raw text havoc."""
    lines = text.splitlines() or [""]
    r = rng.random()
    if r < 0.5:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(lines))
            line = lines[i]
            if ":" in line and rng.random() < 0.7:
                key, _, _ = line.partition(":")
                lines[i] = f"{key}: {rng.choice(YAML_HOSTILE)}"
            elif rng.random() < 0.5:
                lines[i] = line.replace("_", "-") if "_" in line else line + "x"
            else:
                indent = " " * rng.choice([0, 2, 4, 6])
                lines.insert(i, f"{indent}{rng.choice(['receiver', 'unknown_key', 'window', 'overrides', 'match', 'enabled'])}: {rng.choice(YAML_HOSTILE)}")
        return "\n".join(lines) + "\n"
    if r < 0.6:
        # billion laughs (bounded: the loader must not blow up on aliases)
        n = rng.randint(2, 9)
        out = ["a0: &a0 ['lol','lol','lol','lol','lol','lol','lol','lol','lol']"]
        for k in range(1, n):
            out.append(f"a{k}: &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]")
        return "\n".join(out) + f"\nstate:\n  directory: *a{n - 1}\n"
    if r < 0.7:
        depth = rng.randint(5, 2000)
        return "detectors:\n" + "[" * depth + "]" * depth + "\n"
    if r < 0.8 and corpus:
        other = rng.choice(corpus)
        return text[: rng.randrange(len(text) + 1)] + other[rng.randrange(len(other) + 1) :]
    return mutate_bytes(rng, text.encode("utf-8"), []).decode("utf-8", "replace")
