"""Configuration files (JSON or TOML) for ``TrainConfig`` / ``ExtractConfig``: parsed as data, never executed.

A run's own ``train_config.json`` is a valid config file, so ``headstart train DATA --config runs/a/train_config.json``
repeats a run (its bookkeeping keys, such as ``data`` and ``split_counts``, are ignored). Every key is checked
against the dataclass: an unknown key names the closest valid ones, a value of the wrong type says what was
expected. JSON and TOML parsers build only dicts, lists, strings, numbers and booleans: no object is constructed
from the file, no code runs (unlike YAML's Python tags or a pickle).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from .errors import ConfigError, HeadstartError

__all__ = ["ConfigError", "read_config", "config_from_dict"]

# Keys a run writes into train_config.json for the record; they describe the run, they do not configure it.
RECORD_KEYS = frozenset({"data", "split_counts", "classes"})
MAX_BYTES = 1 << 20  # a configuration is a few hundred bytes; refuse to parse anything huge



def read_config(path: str | os.PathLike, cls: type) -> dict[str, Any]:
    """The validated field values in the config file ``path`` for dataclass ``cls`` (only the keys it sets)."""
    path = Path(path)
    try:
        raw = path.read_bytes()[:MAX_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror or exc}).") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: {len(raw)}+ bytes is too large for a configuration file (limit 1 MiB).")
    return config_from_dict(_parse(path, raw), cls, source=str(path))


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    toml = path.suffix.lower() == ".toml"
    try:
        data = tomllib.loads(text) if toml else json.loads(text)
    except (ValueError, RecursionError) as exc:
        kind = "TOML" if toml else "JSON"
        raise ConfigError(f"{path}: not valid {kind} ({str(exc)[:200]}). Expected an object such as "
                          f'{{"strategy": "head", "epochs": 10}}.') from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object of settings at the top level; received "
                          f"{type(data).__name__}.")
    return data


def config_from_dict(data: dict[str, Any], cls: type, *, source: str = "config") -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in RECORD_KEYS:
            continue
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{source}: unknown setting {key!r}.{hint} Valid settings: {', '.join(fields)}.")
        out[key] = _check(value, hints[key], f"{source}: {key}")
    return out


def _check(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to ``hint`` (a str/int/float/bool/tuple[int,...] or an Optional of one), or an error."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    if value is None and type(None) in options:
        return None
    for t in options:
        if t is type(None):
            continue
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
        if typing.get_origin(t) is tuple and isinstance(value, list) and len(value) == len(typing.get_args(t)) \
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
    names = " or ".join("null" if t is type(None) else _type_name(t) for t in options)
    return _raise(f"{where}: expected {names}; received {repr(value)[:80]} ({type(value).__name__}).")


def _type_name(t: Any) -> str:
    if typing.get_origin(t) is tuple:
        return f"a list of {len(typing.get_args(t))} integers"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(t, str(t))


def _raise(msg: str) -> typing.NoReturn:
    raise ConfigError(msg)
