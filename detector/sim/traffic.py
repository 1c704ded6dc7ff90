"""Traffic shape and user population of the simulated shop.

Rate multiplier ``m(t) = daily(t) · weekly(t) · burst(t) · growth(t)``:

* daily: raised cosine over the UTC day, trough 0.3 at 04:00, peak 1.0 at 16:00;
* weekly: Saturday and Sunday × 0.75;
* bursts: 3 per day at seeded random times, 2–8 min long, × 1.8–3.0 (flash sales);
* growth: traffic doubling (a scenario option), a linear ramp to × 2 over its ramp time.

Users: a fixed population with usual source addresses (home, sometimes mobile,
some behind one shared office NAT address) and one or two user agents each.
"""

from __future__ import annotations

import math
import random

DAY = 86400.0

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "ShopApp/4.12.1 (iOS 18.1; iPhone15,2)",
    "ShopApp/4.12.0 (Android 14; SM-S918B)",
]
ATTACK_AGENTS = ["python-requests/2.32.3", "curl/8.5.0", "Go-http-client/1.1", "Hydra/9.5", "Mozilla/5.0 (compatible; MSIE 9.0)"]
OFFICE_IP = "198.51.100.7"


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson(lam) draw: Knuth's product method for lam < 30, else a rounded normal."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit = math.exp(-lam)
        k, p = 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))


def daily(t: float) -> float:
    """Daily shape in [0.3, 1.0]; ``t`` in seconds since the epoch (UTC)."""
    h = (t % DAY) / 3600.0
    return 0.3 + 0.7 * (0.5 - 0.5 * math.cos(2 * math.pi * (h - 4.0) / 24.0))


def weekly(t: float) -> float:
    """0.75 on Saturday and Sunday (1970-01-01 was a Thursday), else 1."""
    dow = (int(t // DAY) + 3) % 7  # 0 = Monday
    return 0.75 if dow >= 5 else 1.0


class Bursts:
    """Seeded flash-sale bursts: per UTC day, 3 plateaus of × 1.8–3.0 lasting 2–8 min."""

    def __init__(self, seed: int, per_day: int = 3) -> None:
        self.seed = seed
        self.per_day = per_day
        self._days: dict[int, list[tuple[float, float, float]]] = {}

    def factor(self, t: float) -> float:
        day = int(t // DAY)
        lst = self._days.get(day)
        if lst is None:
            r = random.Random(self.seed * 1_000_003 + day)
            lst = []
            for _ in range(self.per_day):
                s = day * DAY + r.uniform(8 * 3600, 22 * 3600)
                lst.append((s, s + r.uniform(120, 480), r.uniform(1.8, 3.0)))
            self._days[day] = lst
        for s, e, f in lst:
            if s <= t < e:
                return f
        return 1.0


class User:
    """One shop customer. ``ips``: usual source addresses; ``uas``: usual user agents."""

    __slots__ = ("name", "ips", "uas", "admin", "session", "weight")

    def __init__(self, name: str, ips: list[str], uas: list[str], admin: bool, weight: float) -> None:
        self.name = name
        self.ips = ips
        self.uas = uas
        self.admin = admin
        self.session: str | None = None
        self.weight = weight


def _ip(r: random.Random) -> str:
    while True:
        a = r.randint(11, 223)
        if a not in (127, 169, 172, 192, 198, 100, 10):
            return f"{a}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"


class Population:
    """``n`` users (``u00042@shop.example``), 10 admins, 60 behind :data:`OFFICE_IP`."""

    def __init__(self, seed: int, n: int = 3000) -> None:
        r = random.Random(seed * 7919 + 17)
        self.users: list[User] = []
        for i in range(n):
            ips = [_ip(r)]
            if r.random() < 0.3:
                ips.append(_ip(r))  # mobile
            if i < 60:
                ips.append(OFFICE_IP)
            uas = [r.choice(USER_AGENTS)]
            if r.random() < 0.4:
                uas.append(r.choice(USER_AGENTS))
            self.users.append(User(f"u{i:05d}@shop.example", ips, uas, admin=(60 <= i < 70), weight=r.paretovariate(1.5)))
        self.by_name = {u.name: u for u in self.users}
        self.admins = [u for u in self.users if u.admin]
        total = sum(u.weight for u in self.users)
        acc = 0.0
        self._cum = []
        for u in self.users:
            acc += u.weight / total
            self._cum.append(acc)
        self.visitor_ips = [_ip(r) for _ in range(20000)]

    def pick(self, r: random.Random) -> User:
        """A user weighted by activity (Pareto weights: a few heavy users, a long tail)."""
        import bisect

        i = bisect.bisect_left(self._cum, r.random())
        return self.users[min(i, len(self.users) - 1)]

    def visitor(self, r: random.Random) -> tuple[str, str]:
        """An anonymous visitor's (ip, user agent)."""
        return r.choice(self.visitor_ips), r.choice(USER_AGENTS)


def attacker_ip(r: random.Random) -> str:
    """A fresh source address not in the user population's usual ranges (203.0.113.0/24-like)."""
    return f"{r.choice((45, 185, 193, 91, 5))}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
