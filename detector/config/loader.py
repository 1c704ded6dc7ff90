"""Load and validate the YAML config with file:line error messages.

The YAML is parsed once into a node tree (PyYAML ``compose``) so every key and
value keeps its source position (``node.start_mark``); the same tree is then
constructed into plain Python data and validated by the pydantic root model
(:class:`detector.config.root.Config`). Each pydantic error is mapped back to
the closest YAML node on its path and printed as::

    FILE:LINE: dotted.field.path: message

Errors raised:
    ConfigError: the file cannot be read, is not valid YAML, or does not
    validate. ``ConfigError.problems`` lists every :class:`Problem`;
    ``str(err)`` is the printable lines. Nothing here exits the process: only
    :mod:`detector.cli` does.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from detector.config.root import Config


@dataclass(frozen=True)
class Problem:
    """One config problem. ``line`` is 1-based or ``None`` when unknown; ``path``
    is the dotted field path (list positions as numbers) or ``"yaml"`` for syntax
    errors and ``"<root>"`` for the document itself."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}"


class ConfigError(ValueError):
    """The config could not be loaded; ``problems`` says why, one entry per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_config(path: str | Path) -> Config:
    """Read, parse and validate the YAML file at ``path``.

    Returns:
        The validated :class:`Config`; keys missing from the file take defaults.
    Raises:
        ConfigError: unreadable file, YAML syntax error or validation problems.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, None, "<file>", f"cannot read: {exc}")]) from None
    return load_config_text(text, name)


def load_config_text(text: str, filename: str = "<string>") -> Config:
    """Parse and validate config YAML given as text; see :func:`load_config`."""
    data, lines, problems = _parse(text, filename)
    if problems:
        raise ConfigError(problems)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(filename, lines.get((), 1), "<root>", f"the config must be a mapping of sections, got {_yaml_type(data)}")])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, filename, lines)) from None


def key_lines(path: str | Path) -> dict[str, int]:
    """``{dotted key path: 1-based line}`` of every key in the YAML file at ``path``.

    For messages about a config that validated but whose referenced files
    (certificates, secrets) are unusable. Empty when the file cannot be read
    or parsed (the schema check reports that first).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    _, lines, _ = _parse(text, str(path))
    return {_dotted(k): v for k, v in lines.items()}


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, as pydantic emits it) of the whole config."""
    schema = Config.model_json_schema()
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    schema.setdefault("title", "otel-anomaly config")
    return schema


def config_json_schema_text() -> str:
    """:func:`config_json_schema` as indented JSON text."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=False)


# --------------------------------------------------------------------------- internals


def _parse(text: str, filename: str) -> tuple[Any, dict[tuple, int], list[Problem]]:
    """YAML text -> (data, {path tuple: 1-based line}, syntax/duplicate problems)."""
    try:
        loader = yaml.SafeLoader(text)  # raises ReaderError on non-printable characters
    except yaml.YAMLError as exc:
        return None, {}, [Problem(filename, None, "yaml", f"invalid YAML: {exc}")]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        lines: dict[tuple, int] = {}
        problems: list[Problem] = []
        _index(node, (), lines, problems, filename, set())
        data = loader.construct_document(node)
        return data, lines, problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # an unclosed quote/bracket: point at where it was opened
        line = mark.line + 1 if mark is not None else None
        msg = " ".join(s for s in (exc.context, exc.problem) if s) or str(exc)
        return None, {}, [Problem(filename, line, "yaml", f"invalid YAML: {msg}")]
    except yaml.YAMLError as exc:
        return None, {}, [Problem(filename, None, "yaml", f"invalid YAML: {exc}")]
    except RecursionError:
        return None, {}, [Problem(filename, None, "yaml", "invalid YAML: nested too deeply")]
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: tuple, lines: dict[tuple, int], problems: list[Problem], filename: str, seen_nodes: set[int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen_nodes:  # an alias: indexed once (re-walking aliases of aliases is exponential)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                continue
            sub = path + (key,)
            if key in seen:
                dotted = _dotted(sub)
                problems.append(Problem(filename, key_node.start_mark.line + 1, dotted, "duplicate key (the later one would silently win)"))
            seen.add(key)
            lines[sub] = key_node.start_mark.line + 1
            _index(value_node, sub, lines, problems, filename, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _index(item, path + (i,), lines, problems, filename, seen_nodes)


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path) if path else "<root>"


def _problems_from(exc: ValidationError, filename: str, lines: dict[tuple, int]) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err.get("loc", ())), lines)
        line = None
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        problems.append(Problem(filename, line, _dotted(loc), _message(err, loc)))
    problems.sort(key=lambda p: (p.line if p.line is not None else 1 << 30, p.path))
    return problems


_TAGS = ("str", "none", "int", "float", "bool", "list", "dict", "nullable")


def _clean_loc(loc: tuple, lines: dict[tuple, int]) -> tuple:
    """Drop pydantic's union-member / validator tags (``function-before[...]``,
    ``str``…) that are not YAML keys, keeping real keys with the same names."""
    out: tuple = ()
    for part in loc:
        if isinstance(part, str) and (part.startswith(("function-", "lax-or-strict", "json-or-python")) or part in _TAGS):
            if out + (part,) not in lines:
                continue
        out += (part,)
    return out


def _message(err: dict, loc: tuple) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        msg = "unknown key"
        hint = _suggest(loc)
        if hint:
            msg += f" (did you mean '{hint}'?)"
        return msg
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind not in ("missing",) and "input" in err and not isinstance(err["input"], (dict, list)):
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        if shown not in msg:
            msg += f" (got {shown})"
    return msg


def _suggest(loc: tuple) -> str | None:
    """Closest valid key name at the parent of ``loc`` (for typos like ``endpoitn``)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        model = _model_of(fields[part].annotation)
        if model is None:
            return None
    fields = getattr(model, "model_fields", None)
    if not fields or not isinstance(loc[-1], str):
        return None
    close = difflib.get_close_matches(loc[-1], list(fields), n=1, cutoff=0.6)
    return close[0] if close else None


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _yaml_type(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(type(value), type(value).__name__)
