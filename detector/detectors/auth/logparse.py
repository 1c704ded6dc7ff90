"""Authentication events from log records (raw lines as the Collector's filelog receiver sends them).

Recognisers, tried in this order:

1. user ``log_patterns`` (named groups ``user``, ``source``, ``status``,
   ``outcome``, ``user_agent``, ``token``, ``count``);
2. preset ``openssh`` — OpenSSH ``sshd`` lines (auth.log / secure / journald):

   * ``Failed <method> for [invalid user ]U from S port P`` → failure
   * ``message repeated N times: [ Failed … ]`` (syslog de-duplication) → N failures
   * ``Accepted <method> for U from S port P`` → success
   * ``Invalid user U from S`` → an *unknown-principal probe*: counted as one
     failure only when no ``Failed … for invalid user U from S`` line follows
     in the same window (sshd logs both for one password attempt, only the
     first when the client disconnects before sending a password)
   * ``error: maximum authentication attempts exceeded for U from S`` and
     ``pam_unix(sshd:auth): authentication failure`` → evidence only: sshd
     already logged one ``Failed`` line per attempt, counting them again
     would double the failures;
   * ``pam_unix(<svc>:auth): authentication failure; … rhost=S user=U`` for a
     PAM service other than sshd (su, sudo, login…) → failure.
3. preset ``web_access`` — NCSA Common/Combined Log Format
   (``S - U [time] "METHOD path HTTP/x" status bytes "ref" "ua"``); an auth
   event when the path matches the span patterns; outcome from the status as
   for spans.
4. preset ``structured`` — attributes or a kvlist body with ``event.outcome``
   (ECS/OTel) plus a principal or source key, or an ``event.name`` that
   matches the span patterns.

The body must contain one of a few literal keywords before any regex runs.
Sources: OpenSSH ``auth.c`` (``auth_log``: "Failed"/"Accepted" lines),
``auth2.c`` ("Invalid user", "maximum authentication attempts exceeded");
Apache httpd mod_log_config (Common Log Format); ECS ``event.outcome``.
"""

from __future__ import annotations

import re
from typing import Any

from detector.detectors.auth.events import FAIL, FORBID, INVALID_MARK, OK, OP_LOGIN, OTHER, outcome_attr, outcome_word
from detector.normalise.records import LogRecord

_SSH_FAILED = re.compile(
    r"Failed (?:password|publickey|none|keyboard-interactive(?:/pam)?|hostbased|gssapi-with-mic) for "
    r"(?P<invalid>invalid user )?(?P<user>.*?) from (?P<source>[0-9A-Fa-f:.]+) port \d+"
)
_SSH_REPEATED = re.compile(
    r"message repeated (?P<count>\d+) times: \[ Failed (?:password|publickey|none|keyboard-interactive(?:/pam)?) for "
    r"(?P<invalid>invalid user )?(?P<user>.*?) from (?P<source>[0-9A-Fa-f:.]+) port \d+"
)
_SSH_ACCEPTED = re.compile(
    r"Accepted (?:password|publickey|keyboard-interactive(?:/pam)?|hostbased|gssapi-with-mic) for "
    r"(?P<user>\S+) from (?P<source>[0-9A-Fa-f:.]+) port \d+"
)
_SSH_INVALID = re.compile(r"Invalid user (?P<user>.*?) from (?P<source>[0-9A-Fa-f:.]+)(?: port \d+)?\s*$")
_PAM_FAIL = re.compile(
    r"pam_unix\((?P<svc>[^:)]+):auth\): authentication failure;.*?rhost=(?P<source>\S*)(?:\s+user=(?P<user>\S+))?"
)
_WEB = re.compile(
    r'^(?P<source>\S+) \S+ (?P<user>\S+) \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+)(?: [^"]*)?" (?P<status>\d{3}) \S+'
    r'(?: "[^"]*" "(?P<ua>[^"]*)")?'
)
MAX_LINE = 4096
_KEYWORDS_SSH = ("Failed ", "Accepted ", "Invalid user ", "authentication failure", "message repeated")

# Parsed line: (outcome, user, source, user_agent, token, count, unknown, op, http_ok)
Parsed = tuple


def _status_outcome(status: int) -> tuple[int, bool]:
    if 200 <= status < 400:
        return OK, True
    if status in (400, 401, 403):
        return FAIL, False
    return OTHER, False


class LogParser:
    """Recognises authentication events in :class:`LogRecord` s (see the module docstring).

    Args:
        config: an :class:`~detector.detectors.auth.config.AuthConfig`.
        login_pattern: the compiled span pattern (login/token/… operations), used
            for web paths and ``event.name``.

    ``parse(record)`` returns a :data:`Parsed` tuple or None.
    """

    def __init__(self, config: Any, login_pattern: re.Pattern | None) -> None:
        self._user = [(re.compile(p.pattern), p.outcome, p.unknown_principal) for p in config.log_patterns]
        self._ssh = "openssh" in config.log_presets
        self._web = "web_access" in config.log_presets
        self._structured = "structured" in config.log_presets
        self._login = login_pattern
        self._principal_keys = tuple(config.principal_attributes) + ("user.name", "user.id")
        self._source_keys = tuple(config.source_attributes) + ("source.ip", "client.ip")
        self._outcome_keys = tuple(config.outcome_attributes)
        self._ua_keys = tuple(config.user_agent_attributes)
        self._token_keys = tuple(config.token_attributes)

    def parse(self, rec: LogRecord) -> Parsed | None:
        """One recognised auth event of ``rec`` or None."""
        body = rec.body
        if type(body) is str:
            if len(body) > MAX_LINE:
                body = body[:MAX_LINE]  # auth lines are short; bound the regex work on huge bodies
            for rx, fixed, unknown in self._user:
                m = rx.search(body)
                if m is not None:
                    got = self._from_groups(m, fixed, unknown)
                    if got is not None:
                        return got
            if self._ssh:
                got = self._openssh(body)
                if got is not None:
                    return got
            if self._web and "HTTP/" in body:
                got = self._web_line(body)
                if got is not None:
                    return got
        elif type(body) is dict and self._structured:
            got = self._structured_attrs(body, rec.event_name)
            if got is not None:
                return got
        if self._structured and rec.attrs:
            return self._structured_attrs(rec.attrs, rec.event_name)
        return None

    def _openssh(self, body: str) -> Parsed | None:
        for k in _KEYWORDS_SSH:
            if k in body:
                break
        else:
            return None
        m = _SSH_FAILED.search(body)
        if m is not None:
            if "message repeated" in body:
                r = _SSH_REPEATED.search(body)
                if r is not None:
                    return (FAIL, r["user"], r["source"], None, None, int(r["count"]), bool(r["invalid"]), "sshd", False)
            return (FAIL, m["user"], m["source"], None, None, 1, bool(m["invalid"]), "sshd", False)
        m = _SSH_ACCEPTED.search(body)
        if m is not None:
            return (OK, m["user"], m["source"], None, None, 1, False, "sshd", True)
        m = _SSH_INVALID.search(body)
        if m is not None:
            return (INVALID_MARK, m["user"], m["source"], None, None, 1, True, "sshd", False)
        m = _PAM_FAIL.search(body)
        if m is not None and m["svc"] != "sshd":
            return (FAIL, m["user"], m["source"] or None, None, None, 1, False, m["svc"], False)
        return None

    def _web_line(self, body: str) -> Parsed | None:
        m = _WEB.match(body)
        if m is None:
            return None
        path = m["path"].split("?", 1)[0]
        if self._login is None or not self._login.search(path):
            return None
        outcome, ok = _status_outcome(int(m["status"]))
        user = m["user"]
        return (outcome, None if user == "-" else user, m["source"], m["ua"] or None, None, 1, False,
                f"{m['method']} {path}", ok)

    def _from_groups(self, m: re.Match, fixed: str, unknown: bool) -> Parsed | None:
        g = m.groupdict()
        ok = False
        if fixed == "success":
            outcome, ok = OK, True
        elif fixed == "failure":
            outcome = FAIL
        elif fixed == "forbidden":
            outcome = FORBID
        else:
            outcome = outcome_word(g.get("outcome")) if g.get("outcome") else None
            if outcome is None and g.get("status"):
                try:
                    outcome, ok = _status_outcome(int(g["status"]))
                except ValueError:
                    outcome = None
            if outcome is None:
                return None
            ok = ok or outcome == OK
        try:
            count = int(g["count"]) if g.get("count") else 1
        except ValueError:
            count = 1
        return (outcome, g.get("user"), g.get("source"), g.get("user_agent"), g.get("token"), max(1, count), unknown,
                "log", ok)

    def _structured_attrs(self, attrs: dict, event_name: str) -> Parsed | None:
        outcome = outcome_attr(attrs, self._outcome_keys)
        if outcome is None:
            return None
        name = event_name or str(attrs.get("event.name", "") or attrs.get("event.action", ""))
        category = attrs.get("event.category")
        is_auth = category == "authentication" or (isinstance(category, list) and "authentication" in category)
        if not is_auth and not (name and self._login is not None and self._login.search(name)):
            return None
        user = _first(attrs, self._principal_keys)
        source = _first(attrs, self._source_keys)
        ua = _first(attrs, self._ua_keys)
        token = _first(attrs, self._token_keys)
        return (outcome, user, source, ua, token, 1, False, name or "log", outcome == OK)


def _first(attrs: dict, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return str(v)
    return None


__all__ = ["LogParser", "OP_LOGIN"]
