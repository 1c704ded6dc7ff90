"""``config/default.yaml``: valid, equal to the built-in defaults, every schema key documented."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from detector.config.loader import load_config
from detector.config.root import Config

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "default.yaml"
REGEN = "regenerate it: make config-docs (python -m detector.config.render > config/default.yaml)"


def schema_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        out.append(path)
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out.extend(schema_keys(arg, path + "."))
                break
    return out


def test_default_yaml_is_valid_and_equals_builtin_defaults():
    assert load_config(DEFAULT) == Config()


def test_every_schema_key_appears_with_a_comment():
    text = DEFAULT.read_text()
    missing = []
    for path in schema_keys(Config):
        key = path.rsplit(".", 1)[-1]
        if not re.search(rf"^\s*(#\s*)?(-\s*)?{re.escape(key)}:.*#", text, re.M):
            missing.append(path)
    assert not missing, f"keys without a commented line in config/default.yaml: {missing}; {REGEN}"

