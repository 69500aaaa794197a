"""The data checks of headstart.doctor (issue 26) on generated labels, files and embeddings."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from headstart.data import hash_distance, hash_pairs
from headstart.doctor import (exact_duplicates, label_issues, leaks, near_duplicates, neighbours, oof_probabilities,
                              outliers)
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


def test_hash_pairs_equal_brute_force_and_outliers_stand_out():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=200, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, size=(40, 5)).astype(np.uint64)  # 40 copies with ≤ 5 bits changed
    near = base[:40].copy()
    for k in range(5):
        near ^= np.where(rng.random(40) < 0.8, flips[:, k], np.uint64(0))
    h = np.concatenate([base, near])
    pairs, bits = hash_pairs(h, 6)
    d = hash_distance(h[:, None], h[None, :])
    brute = {(i, j) for i, j in zip(*np.nonzero(np.triu(d <= 6, 1)))}
    assert {tuple(p) for p in pairs.tolist()} == brute and len(brute) >= 40
    assert (bits == d[pairs[:, 0], pairs[:, 1]]).all()
    # One embedding far from a tight cloud: the only outlier.
    emb = np.concatenate([rng.normal(size=(100, 16)) * 0.05 + 1.0, -np.ones((1, 16))])
    _, sims = neighbours(emb, k=5)
    assert [o["index"] for o in outliers(sims)] == [100]


def _picture(path, color, seed, size=96):
    """A smooth random picture around ``color`` (a photo has structure, not per-pixel noise): 6×6 random
    patches scaled up, so that a resized, re-encoded copy still looks like its original."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = np.clip(np.array(color) + rng.normal(0, 30, (6, 6, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).resize((size, size), Image.BICUBIC).save(path)
    return path


def _planted(root):
    """Three colour classes of distinct pictures, with one finding of every kind planted."""
    from PIL import Image

    colors = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220)}
    for split, n in (("train", 14), ("test", 4)):
        for k, (cls, color) in enumerate(colors.items()):
            for i in range(n):  # distinct patterns everywhere (the copy checks look at grey patterns, not colour)
                _picture(root / split / cls / f"{cls}{i}.png", color, seed=i + 100 * (split == "test") + 1000 * k)
    flipped = _picture(root / "train/green/really_red.png", colors["red"], seed=50)
    shutil.copy(root / "train/red/red0.png", root / "test/red/exact_copy.png")
    im = Image.open(root / "train/blue/blue1.png")
    im.resize((67, 67), Image.BICUBIC).save(root / "test/blue/resized_copy.jpg", quality=70)
    make_image(root / "train/blue/blank.png", size=(48, 48), color=(40, 40, 220))
    make_image(root / "train/red/tiny.png", size=(16, 16), color=colors["red"], noise=40, seed=60)
    (root / "train/red/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return flipped


FAST_DOCTOR = ["--model", "test_efficientnet", "--weights", "none", "--input-shape", "64,64", "--workers", "0",
               "--quiet"]


def test_doctor_cli_finds_every_kind_and_writes_doctor_csv(tmp_path, capsys):
    import csv
    import json

    from headstart.cli import main

    root = tmp_path / "data"
    flipped = _planted(root)
    code = main(["doctor", str(root), "--out", str(tmp_path / "out"), "--json", *FAST_DOCTOR])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["images"] == 14 * 3 + 4 * 3 + 6
    assert report["classes"]["green"] == {"train": 13, "val": 2, "test": 4, "total": 19}
    issues = {d["path"]: d for d in report["label_issues"]}
    assert issues[str(flipped)]["label"] == "green" and issues[str(flipped)]["suggested"] == "red"
    assert len(issues) <= 3
    dups = {(d["kind"], tuple(sorted(Path(p).name for p in d["paths"]))): d for d in report["duplicates"]}
    assert set(dups) == {("exact", ("exact_copy.png", "red0.png")), ("near", ("blue1.png", "resized_copy.jpg"))}
    assert all("test" in d["splits"] for d in dups.values())  # both are train/test leaks
    kinds = {Path(d["path"]).name: d["detail"] for d in report["outliers"] if d["kind"] == "unusable"}
    assert set(kinds) == {"blank.png", "tiny.png"}
    assert kinds["blank.png"].startswith("near-constant") and kinds["tiny.png"].startswith("tiny")
    assert [Path(d["path"]).name for d in report["unreadable"]] == ["broken.png"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "doctor.csv")))
    drop = {Path(r["path"]).name for r in rows if r["action"] == "exclude"}
    # One copy of each duplicate pair stays: the test image (the train copy is what leaks into training).
    assert {"really_red.png", "red0.png", "blue1.png", "blank.png", "tiny.png", "broken.png"} <= drop
    assert not {"exact_copy.png", "resized_copy.jpg"} & drop


def test_doctor_cli_clean_data_exits_0_and_bad_input_exits_2(tmp_path, capsys):
    from headstart.cli import main
    from conftest import make_two_classes

    clean = make_two_classes(tmp_path / "clean", 12, noise=40)
    assert main(["doctor", str(clean), "--out", str(tmp_path / "o1"), *FAST_DOCTOR]) == 0
    assert "label issues 0, duplicate groups 0" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["doctor", str(tmp_path / "empty"), *FAST_DOCTOR]) == 2
    assert "no images" in capsys.readouterr().err
    for i in range(8):
        make_image(tmp_path / f"one/a/{i}.png", noise=30, seed=i)
    assert main(["doctor", str(tmp_path / "one"), *FAST_DOCTOR]) == 2
    assert "at least 2" in capsys.readouterr().err
    bad_csv = tmp_path / "list.csv"
    bad_csv.write_text("path,label\n" + "".join(f"{tmp_path}/nowhere{i}.png,{'ab'[i % 2]}\n" for i in range(8)))
    assert main(["doctor", str(bad_csv), "--out", str(tmp_path / "o2"), *FAST_DOCTOR]) == 2
    assert "could be read" in capsys.readouterr().err


def _pictures_with_copies(root, n=16, copies=6, offset=0):
    """Two classes of ``n`` pictures each; the first ``copies`` red ones also as resized JPEG copies."""
    from PIL import Image

    for cls, color in (("red", (200, 60, 60)), ("blue", (60, 60, 200))):
        for i in range(n):
            _picture(root / cls / f"{cls}{i}.png", color, seed=i + 1000 * (cls == "blue") + offset)
    for i in range(copies):
        Image.open(root / f"red/red{i}.png").resize((67, 67), Image.BICUBIC).save(root / f"red/copy{i}.jpg",
                                                                                   quality=70)
    return root


def test_a_split_made_by_headstart_keeps_copies_on_one_side(tmp_path):
    from headstart.data import CopyIndex, load_splits

    root = _pictures_with_copies(tmp_path / "data")
    side = lambda s, name: next(k for k in ("train", "val", "test") if any(Path(it.path).name == name  # noqa: E731
                                                                            for it in getattr(s, k)))
    plain = load_splits(root, val_split=0.25, test_split=0.25, seed=0)
    apart = [i for i in range(6) if side(plain, f"red{i}.png") != side(plain, f"copy{i}.jpg")]
    assert apart, "the plain split should separate some copies, or this test shows nothing"
    grouped = load_splits(root, val_split=0.25, test_split=0.25, seed=0, group=CopyIndex(workers=0))
    assert all(side(grouped, f"red{i}.png") == side(grouped, f"copy{i}.jpg") for i in range(6))
    assert grouped.leaks("train", "test") == 0 and len(grouped.groups) == 12
    assert sum(len(x) for x in (grouped.train, grouped.val, grouped.test)) == 38
    assert 0.15 <= len(grouped.test) / 38 <= 0.35


def test_train_excludes_listed_images_and_warns_when_test_leaks(tmp_path, caplog):
    import shutil

    from headstart.training import train

    root = tmp_path / "data"
    for split in ("train", "test"):
        _pictures_with_copies(root / split, n=8 if split == "train" else 3, copies=0, offset=100 * (split == "test"))
    shutil.copy(root / "train/red/red5.png", root / "test/red/leaked.png")
    from PIL import Image

    Image.open(root / "train/blue/blue4.png").resize((67, 67), Image.BICUBIC).save(root / "test/blue/resized.jpg",
                                                                                 quality=70)
    listed = tmp_path / "doctor.csv"
    listed.write_text("finding,path,action\nlabel_issue,{0}/train/red/red1.png,exclude\n"
                      "outlier,{0}/train/red/red2.png,review\nnear_duplicate,train/blue/blue3.png,exclude\n"
                      .format(root).replace("train/blue", str(root) + "/train/blue"))
    fast = dict(model="test_efficientnet", weights=None, input_shape=(64, 64, 3), strategy="probe", workers=0,
                progress=False)
    with caplog.at_level("WARNING"):
        r = train(root, tmp_path / "run", exclude=str(listed), **fast)
    assert "2 of 8 test images have a near-identical image in train" in caplog.text
    config = json.loads((r.run_dir / "train_config.json").read_text())
    counts = config["split_counts"]
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 16 - 2  # red1, blue3; red2 only "review"
    # evaluate: the byte copy is left out (seen.json); the resized copy is scored, and counted apart
    from headstart.run import load

    m = load(r.run_dir).evaluate(root, workers=0)
    assert m["excluded_seen"] == 1 and m["n"] == 7
    assert [Path(c["path"]).name for c in m["near_copies_of_seen"]] == ["resized.jpg"]
    assert m["near_copies_of_seen"][0]["copy_of_split"] in ("train", "val")
    assert m["without_near_copies"]["n"] == 6
    resized_right = next(p for p in json.loads((r.run_dir / "test_predictions.json").read_text())["items"]
                         if p["path"].endswith("resized.jpg"))["predicted"] == "blue"
    assert m["without_near_copies"]["accuracy"] == pytest.approx((m["accuracy"] * 7 - resized_right) / 6)
    assert "near_copies_of_seen" not in load(r.run_dir).evaluate(root, include_seen=True, workers=0)
    (r.run_dir / "seen_copies.safetensors").write_bytes(b"not a tensor file")  # damaged: a clear error, no guess
    with pytest.raises(HeadstartError, match="seen_copies.safetensors: unreadable"):
        load(r.run_dir).evaluate(root, workers=0)
    unknown = tmp_path / "other.txt"
    unknown.write_text("/nowhere/x.png\n")
    with pytest.raises(HeadstartError, match="none of them in"):
        train(root, tmp_path / "run2", exclude=str(unknown), **fast)


def test_self_confidence_flags_the_per_cell_count_by_lowest_given_probability():
    """The default takes prune_by_noise_rate's count, but the images least believed in their given label across
    the whole set — not the largest margin inside each off-diagonal cell — and never a class's last image."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    probs = np.full((180, 3), 0.1)
    probs[np.arange(180), y] = rng.uniform(0.4, 0.7, 180)
    probs /= probs.sum(1, keepdims=True)  # given-label probabilities 0.67–0.78: thresholds near 0.73
    # Three images given 0 clearly belong to class 1: the (0, 1) cell holds three. Image 70 (given 1) is believed
    # least of all, but its doubt is split between 0 and 2, so it reaches neither class's threshold: the per-cell
    # rule never sees it.
    probs[[0, 1, 2]] = [[0.15, 0.83, 0.02], [0.10, 0.88, 0.02], [0.20, 0.78, 0.02]]
    probs[70] = [0.44, 0.12, 0.44]
    per_cell = {d["index"] for d in label_issues(y, probs, filter_by="prune_by_noise_rate")}
    mine = [d["index"] for d in label_issues(y, probs)]
    assert len(mine) == len(per_cell)
    given = probs[np.arange(180), y]
    assert set(mine) == set(np.argsort(given)[:len(mine)].tolist())
    assert {0, 1, 2} <= per_cell and 70 in mine and 70 not in per_cell and mine[0] == 1
    # A class whose every image is doubted keeps one.
    two = np.array([0, 0, 1, 1, 1, 1])
    p2 = np.array([[0.4, 0.6], [0.45, 0.55], [0.1, 0.9], [0.1, 0.9], [0.2, 0.8], [0.15, 0.85]])
    kept = {d["index"] for d in label_issues(two, p2)}
    assert not {0, 1} <= kept


def test_oof_probabilities_choose_the_power_norm_and_c_by_log_loss():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    # The class shows in the square root of heavy-tailed positive activations, not in their raw scale...
    base = rng.lognormal(0, 1.5, size=(200, 6))
    probs, c, norm = oof_probabilities(base + (y[:, None] * 2.0) * np.sqrt(base), y, norms=("off", "on"))
    assert norm == "on" and probs.shape == (200, 2) and np.allclose(probs.sum(1), 1)
    # ...here in a small shift of features spread far around zero, which the square root squashes.
    x = rng.normal(scale=4.0, size=(200, 6)) + y[:, None] * 2.0
    assert oof_probabilities(x, y, norms=("off", "on"))[2] == "off"
    # C: the least regularised C when the classes separate cleanly, a small one when labels are mostly noise.
    sep = rng.normal(size=(200, 6)) + y[:, None] * 6.0
    assert oof_probabilities(sep, y, norms=("off",))[1] == 1.0
    assert oof_probabilities(rng.normal(size=(200, 6)), y, norms=("off",))[1] <= 0.01
