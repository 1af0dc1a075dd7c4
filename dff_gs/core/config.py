"""Dataclass configs: YAML presets, ``key=value`` overrides, ``--help`` text, resolved dumps.

Every config is a tree of dataclasses whose fields carry their help text in
``field(metadata={"help": ...})``. A YAML preset and command-line overrides are applied on top
of the defaults; an unknown key is a :class:`~dff_gs.core.errors.ConfigError`, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import stat
import typing
from pathlib import Path
from typing import Any, Optional

import yaml

from dff_gs.core.errors import ConfigError, quote, warn
from dff_gs.core.rules import MAX_MAGNITUDE, Rule, finite
from dff_gs.core.utils import atomic_write_path


def option(default: Any, help: str, rule: Optional[Rule] = None, **kwargs) -> Any:
    """A dataclass field with a default, a help string and the ``rule`` its value follows
    (:mod:`dff_gs.core.rules`; checked by :meth:`Section.validate`). Lists / dicts become factories."""
    metadata = {"help": help, "rule": rule}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def choices_of(tp: Any) -> tuple:
    """The values of a ``Literal[...]`` type (``Optional[Literal]`` too); () for any other type."""
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    return next((choices_of(a) for a in typing.get_args(tp) if choices_of(a)), ())


def field_choices(cls: type, name: str) -> tuple:
    """The values field ``name`` of the config section ``cls`` may take (its ``Literal`` type), else ()."""
    return choices_of(_field_types(cls)[name])


def one_of(key: str, value: Any, allowed) -> ConfigError:
    """The error line of a value that is not one of ``allowed``."""
    return ConfigError(f"{key}={quote(value)}: must be one of {' | '.join(map(str, allowed))}")


class Section:
    """A config section (a dataclass) that checks itself: every field's ``Literal`` choices and ``rule``, every
    number finite and below 2^31 in magnitude, the nested sections, then :meth:`check` (what spans several
    fields). The first value out of place is a :class:`ConfigError` ``<key>=<value>: <requirement>``."""

    def validate(self, prefix: str = "") -> None:
        types = _field_types(type(self))
        for f in dataclasses.fields(self):
            key, value = f"{prefix}{f.name}", getattr(self, f.name)
            if isinstance(value, Section):
                value.validate(f"{key}.")
                continue
            allowed = choices_of(types[f.name])
            if allowed and value not in allowed:
                raise one_of(key, value, allowed)
            rule = f.metadata.get("rule")
            if rule is not None and not rule[0](value):
                raise ConfigError(f"{key}={quote(value)}: {rule[1]}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
                    finite(value) and abs(value) < MAX_MAGNITUDE):
                raise ConfigError(f"{key}={quote(value)}: must be a finite number of magnitude below 2^31")
        self.check(prefix)

    def check(self, prefix: str = "") -> None:
        """What the section checks beyond its fields' rules (several fields together, registered names)."""


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
        if len(errors) == 1:  # Optional[X]: what X said (e.g. a value that is not finite)
            raise ConfigError(errors[0])
        raise ConfigError(f"config key '{key}': cannot read {quote(value)} as {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise one_of(key, value, args)
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = (parse_value(value, key) if value.strip().startswith("[")
                     else [v for v in value.split(",") if v])
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {quote(value)}")
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
        raise ConfigError(f"config key '{key}': expected true/false, got {quote(value)}")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if tp is int and isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else value
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
            result = tp(value)
        except OverflowError:  # float() of a 400-digit integer
            raise ConfigError(f"config key '{key}': {quote(value)} is too large for a {tp.__name__}") from None
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected {tp.__name__}, got {quote(value)}") from None
        if tp is float and not math.isfinite(result):  # 1e400 reads as inf: no key means "infinite" by it
            raise ConfigError(f"{key}={result}: not finite (must be a finite number" + (
                ")" if isinstance(value, float) else f"; given {quote(value, 60)})"))
        return result
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {quote(value)}")
        return dict(value)
    return value


def leaves(d: dict, prefix: str = "") -> dict:
    """A nested config dict flattened: ``{"train.steps": 850, ...}`` (dotted key -> leaf value)."""
    out = {}
    for k, v in d.items():
        out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _known_keys(name: Any, known: list[str], prefix: str) -> str:
    """The keys a section knows, for an error line: all of them when they fit, else the ones close to ``name``
    (a section such as ``train`` or ``nerf`` has 25-40: listed in full, the line would run past 300 characters)."""
    listing = ", ".join(known)
    if len(listing) <= 150:
        return f"known: {listing}"
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
    where = f"{len(known)} keys in {prefix.rstrip('.') or 'the config'}, listed by train.py --help"
    return f"did you mean {' | '.join(prefix + c for c in close)}? {where}" if close else where


def apply_dict(cfg: Any, values: dict, prefix: str = "") -> Any:
    """Apply a nested dict of values onto a dataclass config in place; unknown keys are errors."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix or '<root>'}' must be a mapping, got {quote(values)}")
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    types = _field_types(type(cfg))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise ConfigError(f"unknown config key {quote(key)} ({_known_keys(name, sorted(fields), prefix)})")
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
            raise ConfigError(f"override {quote(item)} is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        value: Any = parse_value(raw, key.strip()) if raw.strip() else ""
        if isinstance(value, (dict,)) or value is None and raw.strip().lower() not in ("none", "null", "~"):
            value = raw
        nested: Any = value
        for p in reversed(parts):
            nested = {p: nested}
        apply_dict(cfg, nested)
    return cfg


def warn_repeated(overrides: list[str], where: str = "the command line") -> list[str]:
    """One warning line per key that ``overrides`` (``key=value`` strings, a flag's among them as its key's) set
    more than once: the last one wins, as :func:`apply_overrides` applies them in order. Returns those keys."""
    values: dict[str, list[str]] = {}
    for item in overrides:
        if "=" in item:
            key, raw = item.split("=", 1)
            values.setdefault(key.strip(), []).append(raw)
    repeated = [k for k, v in values.items() if len(v) > 1]
    for key in repeated:
        given = ", then ".join(quote(v, 40) for v in values[key])
        warn(f"{where}: {quote(key)} is set {len(values[key])} times ({given}): the last one wins")
    return repeated


MAX_CONFIG_BYTES = 4 * 2**20
"""A YAML file larger than this is not a config (presets and edit scripts are a few KB): refused before reading."""


MAX_YAML_DEPTH = 64
"""Nesting a YAML config may have (collections in collections): a config is three levels deep; far deeper is a
damaged or hostile file, refused before Python's recursion limit turns it into a traceback."""
MAX_YAML_NODES = 100_000
"""Nodes a YAML config may hold once its aliases are expanded (a preset holds a few hundred): an alias bomb
(billion laughs: anchors listing the previous one ten times) expands to 10^9 and would never finish."""


class YamlLimit(yaml.YAMLError):
    """A YAML text past :data:`MAX_YAML_DEPTH` or :data:`MAX_YAML_NODES`; ``str()`` is the one-line reason."""


class _DuplicateKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, noting each key a mapping gives twice (PyYAML silently keeps the last) as
    ``(key, first line, repeated line)`` in ``duplicates``; merge keys (``<<``) are overrides, not repeats.
    Nesting deeper than :data:`MAX_YAML_DEPTH`, an alias that contains itself and a document that expands to more
    than :data:`MAX_YAML_NODES` nodes are refused (:class:`YamlLimit`) before anything is constructed."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[Any, int, int]] = []
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise YamlLimit(f"nested too deeply (over {MAX_YAML_DEPTH} levels at line {line})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            expanded_size(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key, line = self.construct_scalar(key_node), key_node.start_mark.line + 1
                if key in seen:
                    self.duplicates.append((key, seen[key], line))
                seen.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def expanded_size(node, limit: int = MAX_YAML_NODES) -> int:
    """Nodes of the composed YAML ``node`` with every alias expanded (a node an alias repeats counts each time),
    counted without expanding anything (each node once, its size remembered); :class:`YamlLimit` past ``limit``
    or for a node that contains itself (``&a [*a]``). Iterative: the depth is already bounded, but no recursion."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(node, False)]
    open_nodes: set[int] = set()
    while stack:
        current, done = stack.pop()
        ident = id(current)
        if done:
            open_nodes.discard(ident)
            children = _children(current)
            size = 1 + sum(sizes[id(c)] for c in children)
            if size > limit:
                line = current.start_mark.line + 1
                raise YamlLimit(f"over {limit} values once its aliases are expanded (at line {line}; a config holds "
                                "a few hundred): an alias bomb?")
            sizes[ident] = size
            continue
        if ident in sizes:
            continue
        if ident in open_nodes:
            raise YamlLimit(f"an alias at line {current.start_mark.line + 1} refers to a node that contains it")
        open_nodes.add(ident)
        stack.append((current, True))
        stack.extend((c, False) for c in _children(current) if id(c) not in sizes)
    return sizes[id(node)]


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def yaml_problem(err: yaml.YAMLError) -> str:
    """The first line of what PyYAML says is wrong, at most 100 characters."""
    if isinstance(err, yaml.reader.ReaderError):
        return f"{_character(err)} at position {err.position} is not allowed in YAML text"
    text = str(getattr(err, "problem", None) or err).splitlines() or ["unreadable"]
    return " ".join(text[0].split())[:100]


def _character(err: yaml.reader.ReaderError) -> str:
    ch = err.character
    return f"character #x{ch:04x}" if isinstance(ch, int) else f"byte {ch!r}"


def parse_value(raw: str, key: str) -> Any:
    """A ``key=value`` value (or a list given as text) read as a YAML scalar / flow collection, with the limits of
    a config file; a ``ConfigError`` naming ``key`` and the value when it is not YAML."""
    def refuse(why: str) -> ConfigError:
        name = key if len(key) <= 60 else key[:57] + "..."
        return ConfigError(f"{name}={quote(raw)}: not a valid value ({why})")

    try:
        loader = _DuplicateKeyLoader(raw)  # checks every character first: a ReaderError here
    except yaml.YAMLError as e:
        raise refuse(yaml_problem(e)) from None
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise refuse(yaml_problem(e)) from None
    except RecursionError:
        raise refuse("nested too deeply") from None
    except ValueError:  # int() of a number over Python's 4300 digits
        raise refuse("a number too long to read") from None
    finally:
        loader.dispose()


def read_config_text(path: Path) -> str:
    """The text of a config file, or a ``ConfigError`` saying what ``path`` is instead: missing, a folder, a FIFO
    or device (never read: it could block or never end), unreadable, too large, or not text."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found" + (" (a symlink to a missing file)"
                                                              if path.is_symlink() else "")) from None
    except OSError as e:  # a symlink loop, a parent folder without permission, a name too long
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: a folder, not a config file (give a YAML file)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file (a FIFO, socket or device), not a config file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {st.st_size / 2**20:.0f} MiB, too large for a config file (a YAML of a few KB)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.start} is not UTF-8 text); give a YAML config") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file (it holds NUL bytes); give a YAML config")
    return text


def load_yaml(path: str | Path) -> dict:
    """Read a YAML preset into a dict, with a clear error naming the file; a key given twice in one mapping is a
    warning line (the last one is used, as PyYAML does)."""
    path = Path(path)
    text = read_config_text(path)
    try:
        loader = _DuplicateKeyLoader(text)  # checks every character first: a ReaderError here
    except yaml.reader.ReaderError as e:
        raise ConfigError(f"{path}: not a YAML text ({_character(e)} at position {e.position} is not allowed)"
                          ) from None
    try:
        data = loader.get_single_data() or {}
    except YamlLimit as e:
        raise ConfigError(f"{path}: {e}") from None
    except RecursionError:  # MAX_YAML_DEPTH should come first; kept so no traceback leaks past it
        raise ConfigError(f"{path}: nested too deeply") from None
    except ValueError:  # int() of a number over Python's 4300 digits
        raise ConfigError(f"{path}: holds a number too long to read") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({yaml_problem(e)})") from None
    finally:
        loader.dispose()
    for key, first, again in loader.duplicates:
        warn(f"{path}: key {quote(key)} is given twice (lines {first} and {again}): the last one is used")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping at the top level")
    return data


def save_yaml(cfg: Any, path: str | Path) -> None:
    """Write the resolved config (atomically)."""
    with atomic_write_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cfg: Any, prefix: str = "") -> list[str]:
    """Lines ``key = default  # help`` for every leaf field, for ``--help``."""
    lines, types = [], _field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            lines.extend(describe(value, prefix=f"{key}."))
        else:
            help, allowed = f.metadata.get("help", ""), choices_of(types[f.name])
            if allowed and not all(str(a) in help for a in allowed):
                help += f" ({' | '.join(map(str, allowed))})"
            lines.append(f"  {key}={value!r}    {help}")
    return lines
