"""Per-window accumulators of the auth detector: the only thing the hot path writes.

One :class:`ServiceAcc` per (window, service) holds dicts keyed by hashed
principal / source / token and by protected operation. Each entity slot is a
small ``__slots__`` object with counters and a capped list of ordered events
(for the success-after-failures state machine). Sizes are capped per window
(``MAX_ENTITIES``): beyond it only the service totals are counted.
"""

from __future__ import annotations

EVENT_CAP = 32
MAX_ENTITIES = 200_000
SET_CAP_WINDOW = 5_000


class PAcc:
    """One principal in one window: counts, ordered events ``(t, outcome, source_hash)``, failing sources."""

    __slots__ = ("fail", "succ", "forb", "events", "xfail", "xsucc", "src_fail", "srcs", "trace")

    def __init__(self) -> None:
        self.fail = 0
        self.succ = 0
        self.forb = 0
        self.events: list[tuple] | None = None
        self.xfail = 0
        self.xsucc = 0
        self.src_fail: dict[str | None, int] | None = None
        self.srcs: set | None = None
        self.trace = b""


class SAcc:
    """One source in one window: counts, ordered events ``(t, outcome, principal_hash)``, principals, user agents."""

    __slots__ = ("fail", "succ", "unknown", "events", "xfail", "xsucc", "principals", "uas", "trace")

    def __init__(self) -> None:
        self.fail = 0
        self.succ = 0
        self.unknown = 0
        self.events: list[tuple] | None = None
        self.xfail = 0
        self.xsucc = 0
        self.principals: dict[str | None, int] | None = None
        self.uas: set | None = None
        self.trace = b""


def keep_event(acc: PAcc | SAcc, t: float, outcome: int, other: str | None, n: int, failed: bool) -> None:
    """Append the event ``(t, outcome, other, n)`` to ``acc.events`` (a principal's or a
    source's ordered events; ``other`` is the source / principal hash); beyond
    :data:`EVENT_CAP` only count it, in ``xfail`` when ``failed`` else in ``xsucc``."""
    ev = acc.events
    if ev is None:
        acc.events = [(t, outcome, other, n)]
    elif len(ev) < EVENT_CAP:
        ev.append((t, outcome, other, n))
    elif failed:
        acc.xfail += n
    else:
        acc.xsucc += n


class TAcc:
    """One token in one window: the networks and user agents it was used from."""

    __slots__ = ("nets", "uas", "trace")

    def __init__(self) -> None:
        self.nets: tuple = ()
        self.uas: tuple = ()
        self.trace = b""


class ServiceAcc:
    """All auth accumulators of one service in one window.

    Attributes:
        pr, src, tok: hashed id → :class:`PAcc` / :class:`SAcc` / :class:`TAcc`.
        ops: protected operation → ``[total, anonymous, anonymous_2xx, anonymous_denied, denied, trace]``.
        inv: ``(source_hash, principal_hash)`` → ``[invalid-user marks, failed-invalid lines, time]``.
        att, fail, unknown: login attempts / failures / failures on unknown principals.
        fail_principals, fail_sources: distinct failing principals (capped set) and
            failures per source (capped dict). overflow: entities not tracked (cap).
    """

    __slots__ = ("pr", "src", "tok", "ops", "inv", "att", "fail", "unknown", "fail_principals", "fail_sources",
                 "overflow", "first_time")

    def __init__(self) -> None:
        self.pr: dict = {}
        self.src: dict = {}
        self.tok: dict = {}
        self.ops: dict = {}
        self.inv: dict = {}
        self.att = 0
        self.fail = 0
        self.unknown = 0
        self.fail_principals: set = set()
        self.fail_sources: dict = {}
        self.overflow = 0
        self.first_time = 0.0
