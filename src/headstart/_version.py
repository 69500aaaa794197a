"""The installed version, read from the package metadata (cheap: no heavy import)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("headstart")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
