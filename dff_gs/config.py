"""Dataclass configs: YAML presets, ``key=value`` overrides, ``--help`` text, resolved dumps.

Every config is a tree of dataclasses whose fields carry their help text in
``field(metadata={"help": ...})``. A YAML preset and command-line overrides are applied on top
of the defaults; an unknown key is a :class:`~dff_gs.errors.ConfigError`, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from dff_gs.errors import ConfigError
from dff_gs.utils import atomic_write_path


def option(default: Any, help: str, **kwargs) -> Any:
    """A dataclass field with a default and a help string (lists/dicts become factories)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def to_dict(cfg: Any) -> dict:
    """Nested plain dict of a dataclass config (tuples become lists, for YAML)."""
    return dataclasses.asdict(cfg)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a ``key=value`` string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}': cannot read {value!r} as {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if tp is int and isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else value
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected {tp.__name__}, got {value!r}") from None
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    return value


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def apply_dict(cfg: Any, values: dict, prefix: str = "") -> Any:
    """Apply a nested dict of values onto a dataclass config in place; unknown keys are errors."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix or '<root>'}' must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    types = _field_types(type(cfg))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise ConfigError(f"unknown config key '{key}' (known: {', '.join(sorted(fields))})")
        current = getattr(cfg, name)
        if dataclasses.is_dataclass(current):
            apply_dict(current, value, prefix=f"{key}.")
        else:
            setattr(cfg, name, _coerce(value, types[name], key))
    return cfg


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars) onto ``cfg``."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        value: Any = yaml.safe_load(raw) if raw.strip() else ""
        if isinstance(value, (dict,)) or value is None and raw.strip().lower() not in ("none", "null", "~"):
            value = raw
        nested: Any = value
        for p in reversed(parts):
            nested = {p: nested}
        apply_dict(cfg, nested)
    return cfg


def load_yaml(path: str | Path) -> dict:
    """Read a YAML preset into a dict, with a clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping at the top level")
    return data


def save_yaml(cfg: Any, path: str | Path) -> None:
    """Write the resolved config (atomically)."""
    with atomic_write_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cfg: Any, prefix: str = "") -> list[str]:
    """Lines ``key = default  # help`` for every leaf field, for ``--help``."""
    lines = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            lines.extend(describe(value, prefix=f"{key}."))
        else:
            lines.append(f"  {key}={value!r}    {f.metadata.get('help', '')}")
    return lines
