"""The data checks of headstart.doctor (issue 26) on generated labels, files and embeddings."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from headstart.doctor import exact_duplicates, label_issues, leaks, near_duplicates
from headstart.errors import HeadstartError
from conftest import make_image


def _blobs(n_per_class=80, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(classes, 8))
    x = np.concatenate([c + rng.normal(size=(n_per_class, 8)) for c in centres])
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


def test_flipped_labels_are_found_from_out_of_fold_probabilities():
    x, y = _blobs()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), size=len(y) // 10, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 3, size=len(flipped))) % 3
    probs = cross_val_predict(LogisticRegression(max_iter=1000), x, noisy, cv=5, method="predict_proba")
    issues = label_issues(noisy, probs)
    found = {i["index"] for i in issues}
    assert len(found & set(flipped)) >= 0.85 * len(flipped)
    assert len(issues) <= 2 * len(flipped)
    # Each issue suggests the true class and is ranked by how little the given label is believed.
    assert all(i["suggested"] == y[i["index"]] for i in issues if i["index"] in set(flipped))
    scores = [i["score"] for i in issues]
    assert scores == sorted(scores, reverse=True)


def test_clean_confident_labels_give_no_issue_and_bad_shapes_are_refused():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])
    assert label_issues([0, 0, 1, 1], probs) == []
    assert [i["index"] for i in label_issues([0, 0, 1, 0], probs)] == [3]
    with pytest.raises(HeadstartError, match="shape"):
        label_issues([0, 1], probs)
    with pytest.raises(HeadstartError, match="0..1"):
        label_issues([0, 0, 1, 2], probs)


def test_byte_identical_files_are_grouped(tmp_path):
    a = make_image(tmp_path / "a.png", seed=1, noise=30)
    b = make_image(tmp_path / "b.png", seed=2, noise=30)
    shutil.copy(a, tmp_path / "a_copy.png")
    paths = [a, b, tmp_path / "a_copy.png"]
    assert exact_duplicates(paths) == [[0, 2]]


def test_near_duplicates_chain_and_leaks_span_splits():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 64))
    copies = base[[3, 7]] + rng.normal(scale=0.02, size=(2, 64))  # a resized / re-encoded copy moves a little
    emb = np.concatenate([base, copies])
    groups = near_duplicates(emb, threshold=0.95)
    assert groups == [[3, 50], [7, 51]]
    splits = ["train"] * 50 + ["test", "train"]
    assert leaks(groups, splits) == [{"indices": [3, 50], "splits": ["test", "train"]}]
    with pytest.raises(HeadstartError, match="cosine"):
        near_duplicates(emb, threshold=1.5)
