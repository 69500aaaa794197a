"""Turning what the user points at (a folder, a CSV, a list of files) into an ordered list of labelled items."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import SourceError
from ._images import IMAGE_EXTENSIONS

__all__ = ["Item", "SourceError", "read_source", "scan_folder", "read_csv", "read_exclude"]



@dataclass(frozen=True)
class Item:
    path: str
    label: str = ""


def read_source(source: str | os.PathLike | Sequence[str | os.PathLike | Item]) -> list[Item]:
    """Items from a folder (recursive; the first-level subfolder is the label), a CSV ``path[,label]`` or files.

    The order is deterministic (sorted paths for folders; file order for CSVs and lists).
    """
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            return scan_folder(p)
        if p.suffix.lower() == ".csv" and p.is_file():
            return read_csv(p)
        source = [p]
    items = [s if isinstance(s, Item) else Item(os.path.abspath(s)) for s in source]
    if not items:
        raise SourceError("No input given: expected a folder, a CSV file or image files.")
    if len(items) == 1 and not os.path.lexists(items[0].path):
        raise SourceError(f"Input {items[0].path!r} does not exist. Expected a folder, a CSV or image files.")
    return items


def scan_folder(root: Path) -> list[Item]:
    items = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        label = rel.parts[0] if rel.parts else ""
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                items.append(Item(os.path.abspath(os.path.join(dirpath, name)), label))
    if not items:
        raise SourceError(
            f"Folder {root} contains no images (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}).")
    return items


def read_csv(path: Path) -> list[Item]:
    """CSV with a header naming ``path`` (and optionally ``label``); relative paths are relative to the CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip().lower() for c in (reader.fieldnames or [])]
            if "path" not in fields:
                raise SourceError(
                    f"{path}: expected a header with a 'path' column (and optionally 'label'); received columns "
                    f"{reader.fieldnames or '(none: empty file)'}.")
            reader.fieldnames = fields
            items = []
            for line, row in enumerate(reader, start=2):
                p = (row.get("path") or "").strip()
                if not p:
                    raise SourceError(f"{path}:{line}: empty 'path' value.")
                full = Path(p) if Path(p).is_absolute() else path.parent / p
                items.append(Item(os.path.abspath(full), (row.get("label") or "").strip()))
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not a UTF-8 text CSV ({exc}).") from None
    except csv.Error as exc:
        raise SourceError(f"{path}: malformed CSV ({exc}).") from None
    if not items:
        raise SourceError(f"{path}: the CSV has a header but no rows.")
    return items


def read_exclude(path: str | os.PathLike) -> set[str]:
    """The absolute paths a ``--exclude`` file lists: `headstart doctor`'s doctor.csv (its rows whose ``action`` is
    "exclude"), any CSV with a ``path`` column, or one path per line. Relative paths are relative to the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"--exclude {path}: cannot read it ({exc}). Expected doctor.csv, a CSV with a 'path' "
                          f"column, or a text file with one path per line.") from None
    lines = text.splitlines()
    header = [c.strip().lower() for c in next(csv.reader(lines[:1]), [])]
    if "path" in header:
        rows = csv.DictReader(lines[1:], fieldnames=header)
        listed = [r["path"] for r in rows if (r.get("action") or "exclude").strip() == "exclude"]
    else:
        listed = lines
    base = path.parent
    return {os.path.abspath(p if Path(p).is_absolute() else base / p) for p in (x.strip() for x in listed) if p}
