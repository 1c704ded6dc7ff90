"""Shared config building blocks: strict models, durations, per-service overrides."""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, create_model

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"


def parse_duration(value: Any) -> float:
    """Parse ``"10s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``, ``"1d"`` into seconds (float).

    Raises:
        ValueError: for anything else, including bare numbers (a unit is required).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"duration {value!r} needs a unit, e.g. '{value}s' (units: ms, s, m, h, d)")
    if not isinstance(value, str):
        raise ValueError(f"duration must be a string like '10s', got {type(value).__name__}")
    text = value.strip()
    if not _DURATION_RE.match(text):
        raise ValueError(f"invalid duration {value!r}: use a number and a unit, e.g. '10s', '5m', '1h' (units: ms, s, m, h, d)")
    return sum(float(n) * _UNITS[u] for n, u in _PART_RE.findall(text))


def format_duration(seconds: float) -> str:
    """Inverse of :func:`parse_duration` for display: 90.0 -> ``"90s"``, 0.25 -> ``"250ms"``."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["10s", "5m", "1h"]}),
]
"""A duration in seconds, written in YAML as ``10s``, ``5m``, ``1h``."""


def check_endpoint(value: str) -> str:
    """Accept ``host:port`` (``[v6]:port`` too, port 0-65535) or a ``unix:`` path; raise ValueError otherwise.

    grpc wraps a port above 65535 around to another port instead of failing, so check it here.
    """
    if value.startswith(("unix:", "unix-abstract:")):
        return value
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"endpoint {value!r} must be host:port with a port from 0 to 65535")
    return value


Endpoint = Annotated[str, AfterValidator(check_endpoint)]
"""A listen address ``host:port``."""


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, assignment is validated, and
    numbers must be finite (YAML's ``.inf``/``.nan`` are refused: no threshold, cap or
    budget means anything at infinity, and the memory plan would turn it into NaN)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True, allow_inf_nan=False)


class ServiceMatch(StrictModel):
    """Which services an override applies to: a shell-style glob on ``service.name``."""

    service: str = Field("*", description="glob on service.name, e.g. 'batch-*'")


def override_model(tunables: type[BaseModel]) -> type[StrictModel]:
    """Build the model of one ``overrides`` entry for a tunables model.

    The result has ``match`` plus every field of ``tunables`` made optional, so a
    user gives only the keys they change; types are still checked per key.
    """
    fields: dict[str, Any] = {
        "match": (ServiceMatch, Field(default_factory=ServiceMatch, description="which services")),
    }
    for name, info in tunables.model_fields.items():
        # Keep the field's validators (e.g. Duration's parser): pydantic moves
        # Annotated metadata out of ``info.annotation`` into ``info.metadata``.
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[name] = (Optional[annotation], Field(None, description=info.description))  # type: ignore[name-defined]
    return create_model(f"{tunables.__name__}Override", __base__=StrictModel, **fields)


class OverridableMixin:
    """Adds :meth:`for_service` to a config with an ``overrides`` list.

    Overrides apply in order; each matching entry replaces the keys it sets.
    Results are cached per service until the config object is replaced (SIGHUP
    builds a new one).
    """

    def for_service(self, service: str):  # -> same type as self
        """The effective config for ``service`` (``self`` when no override matches)."""
        return _resolve(self, service)


_RESOLVED: dict[int, tuple[Any, dict[str, Any]]] = {}


def _resolve(config: Any, service: str) -> Any:
    key = id(config)
    entry = _RESOLVED.get(key)
    if entry is None or entry[0] is not config:
        if len(_RESOLVED) > 64:
            _RESOLVED.clear()
        entry = (config, {})
        _RESOLVED[key] = entry
    cache = entry[1]
    hit = cache.get(service)
    if hit is not None:
        return hit
    overrides = getattr(config, "overrides", ())
    matching = [o for o in overrides if fnmatch.fnmatchcase(service, o.match.service)]
    if not matching:
        result = config
    else:
        data = config.model_dump(exclude={"overrides"})
        for o in matching:
            data.update(o.model_dump(exclude={"match"}, exclude_none=True))
        data["overrides"] = []
        result = type(config).model_validate(data)
    if len(cache) > 10_000:
        cache.clear()
    cache[service] = result
    return result
