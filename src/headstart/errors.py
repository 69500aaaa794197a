"""Exceptions raised by headstart.

Each one also subclasses the built-in exception callers already catch (as scikit-learn does), and each
message says what was expected, what was received and how to fix it.
"""
from __future__ import annotations

__all__ = [
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
]


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
