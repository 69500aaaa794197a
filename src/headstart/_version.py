"""The version (read by pyproject.toml too), and installed packages' versions without importlib.metadata.

``importlib.metadata`` costs ~45 ms to import (it parses e-mail headers); every command pays start-up, so the few
versions headstart records (torch, timm: part of an export's identity) are read from the installed
``NAME-VERSION.dist-info`` folder names instead.
"""
from __future__ import annotations

import os
import re
import sys
from functools import lru_cache

__version__ = "0.1.0"


@lru_cache(maxsize=None)
def dist_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (None if not installed), from its .dist-info folder."""
    want = re.sub(r"[-_.]+", "_", name).lower()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if folder.endswith(".dist-info"):
                dist, _, version = folder[:-len(".dist-info")].partition("-")
                if re.sub(r"[-_.]+", "_", dist).lower() == want:
                    return version
    return None
