"""Render ``config/default.yaml`` from the config models: every key, its default, a one-line comment.

    python -m detector.config.render > config/default.yaml

Descriptions come from each field's ``Field(description=...)`` (sub-sections:
the model docstring's first line). Cap keys sized by ``state.memory_budget_mib``
(:data:`detector.state.budget.TABLES`) are written commented out: a key present
in the file counts as set by the user and would no longer follow the budget. Optional sub-sections that default to
``null`` (e.g. ``receiver.grpc.tls``) are shown as ``null`` followed by their
keys commented out, so every key of the schema appears in the file
(``tests/unit/test_config_default.py`` checks that, and that the file loads
to exactly the built-in defaults).
"""

from __future__ import annotations

import sys
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from detector.config.root import Config

HEADER = """\
# otel-anomaly configuration — every key with its default and a one-line comment.
# Generated from the config models: python -m detector.config.render > config/default.yaml
# Validate a file:   otel-anomaly check-config FILE     (prints FILE:LINE: path: message, exit 2 when invalid)
# JSON Schema:       otel-anomaly config-schema
# Durations are strings with a unit: 250ms, 10s, 5m, 1h, 1d. A file may give only some keys.
"""

SECTION_COMMENTS = {
    "receiver": "OTLP/gRPC receiver (Collector otlp exporter: compression gzip or none)",
    "http": "HTTP endpoint: /metrics, /healthz, /readyz, /api/v1/alerts",
    "pipeline": "event-time windows, watermark, queue, dedup",
    "detectors": "detector families; each has enabled, its thresholds, and overrides [{match: {service: GLOB}, key: value}]",
    "alerts": "alert lifecycle shared by all detectors",
    "state": "checkpoints of learned state",
    "logging": "process logs on stderr",
}


def render_default_yaml() -> str:
    """The full commented YAML of :class:`Config` defaults (see module docstring)."""
    lines = [HEADER.rstrip("\n")]
    cfg = Config()
    for name in Config.model_fields:
        lines.append("")
        lines.append(f"{name}:  # {SECTION_COMMENTS.get(name, _doc(type(getattr(cfg, name))))}")
        _render(getattr(cfg, name), 1, lines, commented=False, path=name)
    return "\n".join(lines) + "\n"


def _budget_caps() -> set[str]:
    """Dotted paths of the cap keys sized by ``state.memory_budget_mib`` (left unset in the file)."""
    try:
        from detector.state.budget import TABLES
    except ImportError:
        return set()
    return {t.path for t in TABLES}


def _render(model: BaseModel, depth: int, lines: list[str], commented: bool, path: str = "") -> None:
    dumped = model.model_dump(mode="json")
    pad = "  " * depth
    prefix = "# " if commented else ""
    caps = _budget_caps()
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        desc = _one_line(info.description or "")
        dotted = f"{path}.{name}" if path else name
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{prefix}{name}:{_comment(desc or _doc(type(value)))}")
            _render(value, depth + 1, lines, commented, dotted)
            continue
        if dotted in caps and not commented:
            # a cap written in the file would count as set by the user and stop following the budget
            lines.append(f"{pad}# {name}: {_scalar(dumped[name])}{_comment(desc + '; default lowered to fit state.memory_budget_mib, uncomment to pin')}")
            continue
        sub = _optional_model(info.annotation)
        if value is None and sub is not None:
            lines.append(f"{pad}{prefix}{name}: null{_comment(desc)}")
            _render_example(sub, depth + 1, lines)
            continue
        lines.append(f"{pad}{prefix}{name}: {_scalar(dumped[name])}{_comment(desc)}")
        item = _list_model(info.annotation)
        if item is not None and not value:
            _render_list_example(item, pad + "  ", lines)


def _render_list_example(item_cls: type[BaseModel], pad: str, lines: list[str]) -> None:
    """A commented example entry of a list of sub-models (overrides, patterns)."""
    fields = item_cls.model_fields
    show = list(fields) if len(fields) <= 6 else [n for n, i in fields.items() if i.is_required() or _optional_model(i.annotation) or isinstance(i.annotation, type) and issubclass(i.annotation, BaseModel)]
    for k, name in enumerate(show):
        info = fields[name]
        lead = "- " if k == 0 else "  "
        desc = _one_line(info.description or "")
        sub = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) else None
        if sub is not None:
            lines.append(f"{pad}# {lead}{name}:{_comment(desc)}")
            _render_example(sub, 0, lines, pad=pad + "    ")
        else:
            lines.append(f"{pad}# {lead}{name}: {_example_value(info)}{_comment(desc)}")
    if len(show) < len(fields):
        lines.append(f"{pad}#   <any other key of this section>: <value>  # applied, in order, to the matching services")


def _render_example(model_cls: type[BaseModel], depth: int, lines: list[str], pad: str | None = None) -> None:
    """Keys of an optional sub-section, commented out (required ones shown as <required>)."""
    pad = "  " * depth if pad is None else pad
    for name, info in model_cls.model_fields.items():
        desc = _one_line(info.description or "")
        lines.append(f"{pad}# {name}: {_example_value(info)}{_comment(desc)}")


def _example_value(info: Any) -> str:
    if info.is_required():
        return "<required>"
    default = info.get_default(call_default_factory=True)
    return _scalar(default.model_dump(mode="json") if isinstance(default, BaseModel) else _json(info, default))


def _list_model(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is list:
        args = typing.get_args(annotation)
        if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0]
    return None


def _json(info: Any, default: Any) -> Any:
    if isinstance(default, float) and default.is_integer() and "Duration" in repr(info.metadata):
        return f"{int(default)}s"
    return default


def _optional_model(annotation: Any) -> type[BaseModel] | None:
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix(" ...").strip()


def _comment(desc: str) -> str:
    return f"  # {desc}" if desc else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _doc(cls: type) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    return _one_line(doc[0]) if doc else ""


if __name__ == "__main__":
    sys.stdout.write(render_default_yaml())
