"""Settings: dataclass fields that carry their own help, choices and checks; config files; generated CLI flags.

``TrainConfig`` and ``ExtractConfig`` declare each field with :func:`setting`. That one declaration is the single
source for: the default, the command-line flag and its help (``add_setting_arguments``), the accepted values
(checked once by :func:`check_settings`, whatever the caller: CLI, config file or Python), and the type a config
file must give (:func:`config_from_dict`). A field declared ``api_only`` has no flag (its help says why).

Configuration files (JSON or TOML) are parsed as data, never executed. A run's own ``train_config.json`` is a valid
config file, so ``headstart train DATA --config runs/a/train_config.json`` repeats a run (its bookkeeping keys, such
as ``data`` and ``split_counts``, are ignored). JSON and TOML parsers build only dicts, lists, strings, numbers and
booleans: no object is constructed from the file, no code runs (unlike YAML's Python tags or a pickle).

This module imports nothing heavy: the command line builds its parser from it before deciding what to load.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, HeadstartError

__all__ = ["ConfigError", "setting", "check_settings", "read_config", "config_from_dict", "add_setting_arguments",
           "settings_from_args", "parse_shape", "parse_weights", "BACKENDS"]

# Vocabularies used by more than one configuration live here, once.
BACKENDS = ("auto", "torch", "onnxruntime")

# Keys a run writes into train_config.json for the record; they describe the run, they do not configure it.
RECORD_KEYS = frozenset({"data", "split_counts", "classes"})
MAX_BYTES = 1 << 20  # a configuration is a few hundred bytes; refuse to parse anything huge


def setting(default: Any, help: str, *, choices: tuple | None = None, minimum: float | None = None,
            above: float | None = None, maximum: float | None = None, below: float | None = None,
            flag: str | None = None,
            short: str | None = None, group: str = "settings", metavar: str | None = None,
            parse: Callable[[str], Any] | None = None, api_only: str | None = None) -> Any:
    """A dataclass field with what the CLI and the checks need to know about it.

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones; ``parse`` turns the flag's
    text into the value (e.g. ``"300,300"`` → ``(300, 300, 3)``); ``api_only`` (the reason) means no flag.
    """
    meta = dict(help=help, choices=choices, minimum=minimum, above=above, maximum=maximum, below=below, flag=flag, short=short,
                group=group, metavar=metavar, parse=parse, api_only=api_only)
    return dataclasses.field(default=default, metadata=meta)


def check_settings(obj: Any) -> None:
    """Check every field of a settings dataclass against its declaration; the message names the fix."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, meta = getattr(obj, f.name), f.metadata
        if value is None and _optional(hints[f.name]):
            continue
        want = _expected(hints[f.name], meta)
        if meta.get("choices") is not None and value not in meta["choices"]:
            _fail(f.name, want, value)
        if _is_number(value) and not _in_bounds(value, meta):
            _fail(f.name, want, value)
        if not _type_ok(value, hints[f.name]):
            _fail(f.name, want, value)


def _fail(name: str, want: str, value: Any) -> typing.NoReturn:
    raise HeadstartError(f"{name} must be {want}; received {value!r}.")


def _expected(hint: Any, meta: typing.Mapping[str, Any]) -> str:
    if meta.get("choices") is not None:
        return "one of " + ", ".join(str(c) for c in meta["choices"] if c is not None)
    base = next((t for t in _options(hint) if t is not type(None)), hint)
    kind = {int: "an integer", float: "a number"}.get(base, _type_name(base))
    lo, above, hi, below = (meta.get(k) for k in ("minimum", "above", "maximum", "below"))
    if lo is not None and below is not None:
        return f"a fraction in [{lo:g}, {below:g}), e.g. 0.15"
    if lo is not None and hi is not None:
        return f"{kind} between {lo:g} and {hi:g}"
    if lo is not None:
        return f"{kind} ≥ {lo:g}"
    if above is not None:
        return f"> {above:g}"
    return kind


def _in_bounds(value: float, meta: typing.Mapping[str, Any]) -> bool:
    lo, above, hi, below = (meta.get(k) for k in ("minimum", "above", "maximum", "below"))
    checks = [(lo, lambda b: value >= b), (above, lambda b: value > b), (hi, lambda b: value <= b),
              (below, lambda b: value < b)]
    return all(bound is None or test(bound) for bound, test in checks)  # NaN fails every comparison


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _options(hint: Any) -> tuple:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _optional(hint: Any) -> bool:
    return type(None) in _options(hint)


def _type_ok(value: Any, hint: Any) -> bool:
    try:
        _check(value, hint, "")
    except ConfigError:
        return False
    return True


# -- configuration files --------------------------------------------------------------------------------------

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
    options = _options(hint)
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
        if typing.get_origin(t) is tuple and isinstance(value, (list, tuple)) \
                and len(value) == len(typing.get_args(t)) \
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
    names = " or ".join("null" if t is type(None) else _type_name(t) for t in options)
    raise ConfigError(f"{where}: expected {names}; received {repr(value)[:80]} ({type(value).__name__}).")


def _type_name(t: Any) -> str:
    if typing.get_origin(t) is tuple:
        return f"a list of {len(typing.get_args(t))} integers"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(t, str(t))


# -- generated command-line flags -----------------------------------------------------------------------------

def parse_shape(value: str | None) -> tuple[int, int, int] | None:
    """'300,300' or '480x640' → (300, 300, 3) (a command-line parser: errors are argparse's)."""
    if value is None:
        return None
    parts = value.replace("x", ",").replace("×", ",").split(",")
    try:
        nums = [int(v) for v in parts if v.strip()]
    except ValueError:
        nums = []
    if len(nums) == 3 and nums[2] == 3:
        nums = nums[:2]
    if len(nums) != 2:
        raise argparse.ArgumentTypeError(f"expects HEIGHT,WIDTH such as 300,300 or 480,640; received {value!r}.")
    return nums[0], nums[1], 3


def parse_weights(value: str) -> str | None:
    """'none' (any case) → None (random init); anything else is 'imagenet' or a path."""
    return None if value.lower() == "none" else value


def add_setting_arguments(parser: argparse.ArgumentParser, cls: type, *, only: tuple[str, ...] | None = None,
                          skip: tuple[str, ...] = (), defaults: bool = False,
                          groups: dict[str, argparse._ArgumentGroup] | None = None) -> None:
    """One flag per field of ``cls`` (``--layer-decay`` for ``layer_decay``), with its help, choices and default.

    With ``defaults=False`` a flag that is not given leaves no attribute (``argparse.SUPPRESS``), so a config file
    can supply it and :func:`settings_from_args` returns only what the user typed.
    """
    hints = typing.get_type_hints(cls)
    groups = {} if groups is None else groups
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("api_only") or f.name in skip or (only is not None and f.name not in only):
            continue
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        names = [meta.get("flag") or "--" + f.name.replace("_", "-")] + ([meta["short"]] if meta.get("short") else [])
        base = next(t for t in _options(hints[f.name]) if t is not type(None))
        default = f.default if defaults else argparse.SUPPRESS
        shown = "none" if f.default is None else f.default
        help_text = meta["help"] if "default" in meta["help"] else f"{meta['help']} (default: {shown})"
        kw: dict[str, Any] = dict(dest=f.name, default=default, help=help_text.replace("%", "%%"))
        if base is bool:
            group.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
            continue
        kw["type"] = meta.get("parse") or (base if base in (int, float) else str)
        if meta.get("choices") is not None:
            kw["choices"] = [c for c in meta["choices"] if c is not None]
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        group.add_argument(*names, **kw)


def settings_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` the user gave on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def api_only_fields(cls: type) -> dict[str, str]:
    """Fields without a flag, and why (documented in the --help epilog and README)."""
    return {f.name: f.metadata["api_only"] for f in dataclasses.fields(cls) if f.metadata.get("api_only")}
