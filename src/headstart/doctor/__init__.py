"""Data checks before anyone trusts an accuracy (issue 26): label issues, duplicates, train/test leakage, outliers.

``check(DATA)`` runs them all (`headstart doctor`); the rules are plain functions over arrays headstart already
computes (out-of-fold probabilities, embeddings) and import no torch; the pixel checks (hashes, thumbnails, copy
groups) live in ``headstart.data`` because `train` runs them before it splits.

Label issues follow the confident-learning rule of Northcutt, Jiang & Chuang (JAIR 2021), written here rather than
imported: cleanlab, which implements it, is AGPL-3.0 and headstart is Apache-2.0 (benchmarks/doctor.py compares
the two on the same probabilities).
"""
from ..lazy import attach as _attach

__getattr__, __dir__ = _attach(__name__, {
    "check": "._check:check", "DoctorConfig": "._config:DoctorConfig", "DoctorReport": "._check:DoctorReport",
    "CSV_NAME": "._config:CSV_NAME",
    "label_issues": "._rules:label_issues", "oof_probabilities": "._rules:oof_probabilities",
    "exact_duplicates": "._rules:exact_duplicates", "near_duplicates": "._rules:near_duplicates",
    "neighbours": "._rules:neighbours", "outliers": "._rules:outliers", "leaks": "._rules:leaks",
    "projection": "._rules:projection",
})

__all__ = ["check", "DoctorConfig", "DoctorReport", "CSV_NAME", "label_issues", "oof_probabilities",
           "exact_duplicates", "near_duplicates", "neighbours", "outliers", "leaks", "projection"]
