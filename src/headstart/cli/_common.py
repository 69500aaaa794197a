"""Pieces shared by the subcommands. Nothing heavy is imported here: `headstart --help` must start in a blink."""
from __future__ import annotations

import argparse
import json
import sys

from ..config import add_setting_arguments

__all__ = ["add_verbose", "add_model_arguments", "add_backend_arguments", "print_results", "at_least",
           "report_skipped"]

MAX_SKIP_LINES = 20


def add_verbose(p: argparse.ArgumentParser) -> None:
    """`-v/--verbose` on a subcommand (not given: the top-level value stands)."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log details: the backend chosen and why, exports, cache use; tracebacks of internal errors")


def add_model_arguments(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    """--model/--weights, with the words and help of ExtractConfig (one declaration for every command)."""
    from ..features import ExtractConfig

    add_setting_arguments(p, ExtractConfig, only=("model", "weights") if model else ("weights",), defaults=True)


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """--backend/--device: how the network runs; the results agree across backends within PARITY_TOL."""
    from ..features import ExtractConfig

    add_setting_arguments(p, ExtractConfig, only=("backend", "device"), defaults=True)


def print_results(results, as_json: bool) -> int:
    """Print classify/predict results (errors on stderr, one line each); exit code 1 if any image failed."""
    for r in results:
        if not r.ok:
            print(f"error: {r.path}: {r.error}", file=sys.stderr)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.ok:
                print(f"{r.path}: " + ", ".join(str(p) for p in r.predictions))
    return 1 if any(not r.ok for r in results) else 0


def report_skipped(skipped: list[tuple[str, str]], where: str | None = None) -> None:
    """One `error: PATH: CAUSE` line per unreadable input (the first 20; the rest are in ``where``)."""
    for path, reason in skipped[:MAX_SKIP_LINES]:
        print(f"error: {path}: {reason}", file=sys.stderr)
    if len(skipped) > MAX_SKIP_LINES:
        more = f" in {where}" if where else ""
        print(f"... and {len(skipped) - MAX_SKIP_LINES} more{more}", file=sys.stderr)


def at_least(minimum: int):
    """argparse type: an integer ≥ ``minimum``, with a message that says so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer ≥ {minimum}; received {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer ≥ {minimum}; received {value}")
        return value

    parse.__name__ = f"integer ≥ {minimum}"
    return parse
