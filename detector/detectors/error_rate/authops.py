"""Which client calls target an *authentication operation* (login, token, session, …).

Used by the error_rate detector to decide what a refused client call (HTTP
401/403, gRPC UNAUTHENTICATED 16 / PERMISSION_DENIED 7) means, see
:meth:`~detector.detectors.error_rate.detector.ErrorRateDetector._auth_errors`.

A client span's target operation is read from, in order (OpenTelemetry
semantic conventions, both generations):

1. ``SpanRecord.operation`` — ``http.route`` with the method (rarely on client
   spans), ``rpc.service/rpc.method`` (gRPC: ``shop.auth.v1.TokenService/Verify``),
   else the span name;
2. the span name when it differs (HTTP client span names are ``{method}`` or
   ``{method} {url.template}`` in the stable conventions, ``HTTP {method}`` in
   the old ones — usually no route at all);
3. the URL path: ``url.template`` (client route template), ``url.path``,
   ``http.target`` (old), or the path of ``url.full`` (stable client
   attribute) / ``http.url`` (old) — scheme, host, port, query and fragment
   cut off, so the host name (``auth-service``) never decides and query
   strings do not multiply the cache.

The patterns (regexes searched case-insensitively, default
:data:`~detector.detectors.base.AUTH_OPERATION_PATTERNS`, the auth detector's
notion of a login/token/session operation) run once per distinct string; the
decision is cached in a bounded dict (cleared when full: ids leaking into
paths cannot grow it). Only refused client spans are classified, so the
cost is nil for ordinary traffic and one or two dict lookups for a refusal.
"""

from __future__ import annotations

import re
from typing import Iterable

from detector.detectors.base import any_of
from detector.normalise.records import SpanRecord

_PATH_ATTRS = ("url.template", "url.path", "http.target")  # a path (maybe with a query)
_URL_ATTRS = ("url.full", "http.url")  # an absolute URL (RFC 3986: scheme://authority/path?query#fragment)


def target_path(attrs: dict) -> str | None:
    """The request path of a client span's attributes, without query or fragment; None when none is recorded.

    ``{"url.full": "http://auth:8080/login?next=/"}`` -> ``"/login"``; ``{"http.target": "/a?b"}`` -> ``"/a"``.
    """
    if not attrs:
        return None
    for k in _PATH_ATTRS:
        v = attrs.get(k)
        if v and type(v) is str:
            return v.split("?", 1)[0].split("#", 1)[0]
    for k in _URL_ATTRS:
        v = attrs.get(k)
        if v and type(v) is str:
            v = v.split("?", 1)[0].split("#", 1)[0]
            i = v.find("//")  # scheme://authority or a scheme-relative //authority (semconv example "//localhost")
            if i >= 0 and (i == 0 or v[i - 1] == ":"):
                j = v.find("/", i + 2)
                return v[j:] if j >= 0 else "/"
            return v
    return None


class AuthOperations:
    """Decides whether a (refused) client span called an authentication operation.

    Args:
        patterns: regexes (Python ``re`` syntax), searched case-insensitively;
            an empty list means no operation is an authentication operation.

    Raises:
        re.error: a pattern does not compile (the config validates them first).
    """

    CACHE_MAX = 4096

    def __init__(self, patterns: Iterable[str]) -> None:
        self._re = any_of(patterns, re.IGNORECASE)
        self._cache: dict[str, bool] = {}

    def matches(self, text: str) -> bool:
        """True when ``text`` (an operation, span name or path) matches a pattern (cached per string)."""
        hit = self._cache.get(text)
        if hit is None:
            hit = self._re is not None and self._re.search(text) is not None
            if len(self._cache) >= self.CACHE_MAX:
                self._cache.clear()
            self._cache[text] = hit
        return hit

    def targets_auth(self, span: SpanRecord) -> bool:
        """True when ``span`` (a client/producer span) calls an authentication operation (see the module docstring)."""
        if self._re is None:
            return False
        op = span.operation
        if self.matches(op):
            return True
        name = span.name
        if name != op and self.matches(name):
            return True
        path = target_path(span.attrs)
        return path is not None and self.matches(path)
