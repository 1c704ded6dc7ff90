"""Auth events from spans (classification, outcome, identities) and from log lines (presets, user patterns)."""

from __future__ import annotations

import pytest

from detector.detectors.auth.config import AuthConfig
from detector.detectors.auth.events import FAIL, FORBID, INVALID_MARK, OK, OP_LOGIN, OP_PROTECTED, OTHER, SpanExtractor
from detector.detectors.auth.logparse import LogParser
from detector.normalise.records import SPAN_KIND_CLIENT, STATUS_ERROR
from tests.unit._auth_build import T0, detector, kinds, log, run, span


def extractor(**cfg) -> SpanExtractor:
    return SpanExtractor(AuthConfig(**cfg))


def parser(**cfg) -> LogParser:
    ex = extractor(**cfg)
    return LogParser(AuthConfig(**cfg), ex._login)


# ------------------------------------------------------------------ spans


@pytest.mark.parametrize("op", ["POST /login", "POST /api/v1/signin", "POST /oauth/token", "auth.v1.Auth/Authenticate",
                                "DELETE /session", "POST /sign_in", "GET /LOGIN"])
def test_login_operations_recognised(op):
    ev = extractor().extract(span(T0, "alice", "198.51.100.1", 200, op=op))
    assert ev is not None and ev.op_class == OP_LOGIN and ev.outcome == OK


def test_non_auth_span_rejected_and_cached():
    ex = extractor()
    s = span(T0, None, None, 200, op="GET /api/products/{id}")
    assert ex.extract(s) is None
    assert ex._cache["GET /api/products/{id}"] == 0
    assert ex.extract(s) is None


def test_denied_operation_becomes_protected():
    ex = extractor()
    assert ex.extract(span(T0, None, "198.51.100.1", 200, op="GET /api/orders")) is None
    ev = ex.extract(span(T0, None, "198.51.100.1", 401, op="GET /api/orders"))
    assert ev.op_class == OP_PROTECTED and ev.outcome == FAIL
    ev = ex.extract(span(T0, None, "198.51.100.1", 200, op="GET /api/orders"))
    assert ev.op_class == OP_PROTECTED and ev.http_ok
    ev = ex.extract(span(T0, "bob", "198.51.100.1", 403, op="GET /api/orders"))
    assert ev.outcome == FORBID


def test_configured_protected_pattern():
    ev = extractor(protected_patterns=[r"^GET /admin"]).extract(span(T0, None, "1.2.3.4", 200, op="GET /admin/users"))
    assert ev.op_class == OP_PROTECTED


@pytest.mark.parametrize("status,grpc,status_code,attrs,expected", [
    (200, None, 0, {}, OK), (302, None, 0, {}, OK), (401, None, 0, {}, FAIL), (403, None, 0, {}, FAIL),
    (400, None, 0, {}, FAIL), (429, None, 0, {}, OTHER), (503, None, 2, {}, OTHER),
    (None, 0, 0, {}, OK), (None, 16, 2, {}, FAIL), (None, 7, 2, {}, FAIL), (None, 14, 2, {}, OTHER),
    (None, None, STATUS_ERROR, {}, FAIL), (None, None, 0, {}, OK),
    (200, None, 0, {"event.outcome": "failure"}, FAIL), (401, None, 0, {"auth.outcome": "success"}, OK),
])
def test_login_outcomes(status, grpc, status_code, attrs, expected):
    s = span(T0, "alice", "198.51.100.1", status, grpc=grpc, attrs=attrs, status_code=status_code, op="POST /login")
    assert extractor().extract(s).outcome == expected


def test_identities_from_configured_attributes_and_forwarded_for():
    s = span(T0, None, None, 401, ua=None, attrs={"user.email": "a@example.com",
                                                  "http.request.header.x-forwarded-for": ["203.0.113.9, 10.0.0.1"],
                                                  "user_agent.original": "curl/8", "session.id": "S1"})
    ev = extractor(principal_attributes=["user.email"]).extract(s)
    assert (ev.principal, ev.source, ev.user_agent, ev.token) == ("a@example.com", "203.0.113.9", "curl/8", "S1")


def test_client_spans_are_not_auth_events_by_default():
    assert extractor().extract(span(T0, "alice", "1.2.3.4", 401, kind=SPAN_KIND_CLIENT)) is None
    assert extractor(span_kinds=["client"]).extract(span(T0, "alice", "1.2.3.4", 401, kind=SPAN_KIND_CLIENT)) is not None


# ------------------------------------------------------------------ logs

SSH = "Dec 10 07:07:38 LabSZ sshd[24206]: "


@pytest.mark.parametrize("body,expected", [
    (SSH + "Failed password for root from 183.62.140.253 port 41166 ssh2", (FAIL, "root", "183.62.140.253", 1, False)),
    (SSH + "Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
     (FAIL, "webmaster", "173.234.31.186", 1, True)),
    (SSH + "Failed password for invalid user  from 34.204.227.175 port 5122 ssh2", (FAIL, "", "34.204.227.175", 1, True)),
    (SSH + "Failed publickey for ubuntu from 85.245.107.41 port 54259 ssh2: RSA SHA256:aC2U",
     (FAIL, "ubuntu", "85.245.107.41", 1, False)),
    (SSH + "message repeated 5 times: [ Failed password for root from 221.194.44.190 port 40454 ssh2]",
     (FAIL, "root", "221.194.44.190", 5, False)),
    (SSH + "Accepted password for fztu from 119.137.62.142 port 49116 ssh2", (OK, "fztu", "119.137.62.142", 1, False)),
    (SSH + "Accepted publickey for ubuntu from 85.245.107.41 port 54259 ssh2: RSA SHA256:Kl8k",
     (OK, "ubuntu", "85.245.107.41", 1, False)),
    (SSH + "Invalid user admin from 91.197.232.109", (INVALID_MARK, "admin", "91.197.232.109", 1, True)),
    (SSH + "Invalid user test9 from 52.80.34.196 port 36060", (INVALID_MARK, "test9", "52.80.34.196", 1, True)),
    (SSH + "Failed password for root from 2001:db8::7 port 22 ssh2", (FAIL, "root", "2001:db8::7", 1, False)),
    ("Mar 27 13:06:56 host su[99]: pam_unix(su:auth): authentication failure; logname=bob uid=1000 euid=0 tty=pts/0 "
     "ruser=bob rhost=  user=root", (FAIL, "root", None, 1, False)),
])
def test_openssh_preset(body, expected):
    p = parser().parse(log(T0, body))
    assert p is not None
    assert (p[0], p[1], p[2], p[5], p[6]) == expected


@pytest.mark.parametrize("body", [
    SSH + "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root",
    SSH + "error: maximum authentication attempts exceeded for root from 1.2.3.4 port 22 ssh2 [preauth]",
    SSH + "Received disconnect from 1.2.3.4: 11: Bye Bye [preauth]",
    SSH + "pam_unix(sshd:session): session opened for user ubuntu by (uid=0)",
    "GET / HTTP/1.1",
    {"msg": "hello"},
])
def test_lines_that_are_not_counted(body):
    # sshd logs one "Failed" line per attempt; PAM / max-attempts lines repeat it and must not double count
    assert parser().parse(log(T0, body)) is None


def test_web_access_log_preset():
    line = ('203.0.113.5 - - [10/Oct/2023:13:55:36 +0000] "POST /login?next=/ HTTP/1.1" 401 512 "-" '
            '"Mozilla/5.0 (X11)"')
    p = parser().parse(log(T0, line, service="nginx"))
    assert p == (FAIL, None, "203.0.113.5", "Mozilla/5.0 (X11)", None, 1, False, "POST /login", False)
    ok = '198.51.100.2 - carol [10/Oct/2023:13:55:36 +0000] "POST /oauth/token HTTP/2.0" 200 12'
    assert parser().parse(log(T0, ok))[:3] == (OK, "carol", "198.51.100.2")
    other = '198.51.100.2 - - [10/Oct/2023:13:55:36 +0000] "GET /static/app.js HTTP/1.1" 200 12'
    assert parser().parse(log(T0, other)) is None


def test_structured_log_attributes():
    rec = log(T0, "user login", attrs={"event.name": "user.login", "event.outcome": "failure", "user.name": "dave",
                                       "source.ip": "203.0.113.8"})
    p = parser().parse(rec)
    assert p[:3] == (FAIL, "dave", "203.0.113.8")
    body = {"event.category": "authentication", "event.outcome": "success", "user.id": "u1", "client.address": "1.2.3.4"}
    assert parser().parse(log(T0, body))[:3] == (OK, "u1", "1.2.3.4")
    assert parser().parse(log(T0, "x", attrs={"event.outcome": "failure", "event.name": "db.query"})) is None


def test_user_pattern_first():
    cfg = {"log_patterns": [{"pattern": r"LOGIN (?P<outcome>\S+) user=(?P<user>\S+) ip=(?P<source>\S+)"}]}
    p = parser(**cfg).parse(log(T0, "app: LOGIN FAIL user=eve ip=198.51.100.77"))
    assert p[:3] == (FAIL, "eve", "198.51.100.77")
    assert parser(**cfg).parse(log(T0, "app: LOGIN ok user=eve ip=198.51.100.77"))[0] == OK
    assert parser(**cfg).parse(log(T0, "app: LOGIN maybe user=eve ip=198.51.100.77")) is None
    cfg = {"log_patterns": [{"pattern": r"bad login for (?P<user>\S+) from (?P<source>\S+)", "outcome": "failure"}]}
    assert parser(**cfg).parse(log(T0, "bad login for x from 1.2.3.4"))[:3] == (FAIL, "x", "1.2.3.4")


def test_invalid_user_probe_counts_once_with_or_without_failed_line():
    # sshd: "Invalid user" then "Failed … invalid user" for one attempt = 1 failure; "Invalid user" alone = 1 probe
    lines = []
    for i in range(6):
        t = T0 + i * 2
        lines.append(log(t, f"{SSH}Invalid user u{i} from 203.0.113.50"))
        lines.append(log(t + 1, f"{SSH}Failed password for invalid user u{i} from 203.0.113.50 port 4{i} ssh2"))
    for i in range(6, 12):
        lines.append(log(T0 + i * 2, f"{SSH}Invalid user u{i} from 203.0.113.50"))
    res = run(detector(reveal_identities=True), lines)
    assert kinds(res) == {"password_spraying"}
    assert [i for i, _ in res] == [1, 2]  # 10 principals by T0+18 s (window 1), all 12 by window 2
    c = res[-1][1]
    assert c.observed["failures"] == 12 and c.observed["failed_principals"] == 12
    assert c.observed["unknown_principal_failures"] == 12


def test_huge_and_odd_bodies_are_cheap_and_safe():
    p = parser()
    assert p.parse(log(T0, "Failed password for " + "x" * 2_000_000)) is None
    assert p.parse(log(T0, b"Failed password for root from 1.2.3.4 port 1 ssh2")) is None  # bytes body
    assert p.parse(log(T0, None)) is None
    assert p.parse(log(T0, ["a", 1])) is None
    assert p.parse(log(T0, {"event.outcome": 3, "event.category": ["authentication"]})) is None
