"""Exceptions raised by headstart.

Each one also subclasses the built-in exception callers already catch (as scikit-learn does), and each
message says what was expected, what was received and how to fix it.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = [
    "use_cli_words",
    "words",
    "HeadstartError",
    "UnknownModelError",
    "UnknownLayerError",
    "InputShapeError",
    "WeightsError",
    "WeightsNotFoundError",
    "ChecksumError",
    "ImageLoadError",
    "SourceError",
    "ConfigError",
    "IncompleteStoreError",
    "RunError",
    "ExplainError",
    "NoFeatureMapError",
    "ReportError",
]

# Messages name the fix in the caller's own words: ``weights=None`` to a Python caller, ``--weights none`` to a
# shell user. A plain flag rather than a context variable, so that threads the command starts see it too.
_cli_words = False


@contextlib.contextmanager
def use_cli_words() -> Iterator[None]:
    """Within this block, messages give command-line words (``--weights PATH``); the CLI's ``main`` uses it.

    The previous setting comes back on exit, so a program (or a test) that calls ``headstart.cli.main`` and then
    the library gets Python words again.
    """
    global _cli_words
    before, _cli_words = _cli_words, True
    try:
        yield
    finally:
        _cli_words = before


def words(python: str, cli: str) -> str:
    """``cli`` while the command line is the caller (see :func:`use_cli_words`), else ``python``."""
    return cli if _cli_words else python


class HeadstartError(Exception):
    """Base class of every error headstart raises on purpose; the CLI prints these without a traceback."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise print the message in quotes
        return str(self.args[0]) if self.args else ""


class UnknownModelError(HeadstartError, KeyError):
    """A model name that is neither a headstart alias nor a timm architecture."""


class UnknownLayerError(HeadstartError, KeyError):
    """A layer name that the model does not have."""


class InputShapeError(HeadstartError, ValueError):
    """An ``input_shape`` the architecture or the weights cannot take."""


class WeightsError(HeadstartError, ValueError):
    """Weights that cannot be used with the requested model."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No copy of the weights is available here (no package, no cached file, no network)."""


class ChecksumError(WeightsError):
    """A weights file whose SHA-256 differs from the recorded one; it is never loaded."""


class ImageLoadError(HeadstartError, OSError):
    """An image file that cannot be read or decoded."""

    def __init__(self, path: object, cause: str):
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


class SourceError(HeadstartError, ValueError):
    """A folder, CSV or file list that cannot be used."""


class ConfigError(HeadstartError, ValueError):
    """A configuration file that cannot be used: unreadable, not JSON/TOML, unknown keys, wrong types."""


class IncompleteStoreError(HeadstartError, FileNotFoundError):
    """A feature store whose extraction has not finished (interrupted, or still running)."""


class RunError(HeadstartError, ValueError):
    """A run directory that cannot be used: missing files, another format, a damaged or tampered file."""


class ExplainError(HeadstartError, ValueError):
    """An explanation that cannot be computed: a wrong target class, method or layer."""


class NoFeatureMapError(ExplainError):
    """A model without a convolutional feature map near its output (e.g. a vision transformer)."""


class ReportError(HeadstartError, ValueError):
    """Predictions that cannot be used for a report (another format, classes that do not match the run)."""
