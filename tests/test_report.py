"""`headstart report`: a self-contained page, checked in a real headless browser; damaged inputs degrade clearly."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

import headstart
from headstart.cli import main
from headstart.errors import RunError
from headstart.report import N_ISSUES, N_PAIRS, PREDICTIONS_FORMAT, write_report

from conftest import make_image

pytest.importorskip("captum")

COLORS = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220)}
FAST = dict(model="test_efficientnet", weights=None, input_shape=(64, 64, 3), lr=1e-2, batch_size=8, epochs=6,
            patience=50, workers=0, strategy="head", progress=False)


def _folder(root: Path, per_class: int, noise: int = 90) -> Path:
    for cls, color in COLORS.items():
        for i in range(per_class):
            make_image(root / cls / f"{cls}{i}.png", size=(40, 40), color=color, noise=noise, seed=i)
    return root


def _write_predictions(run: Path, test_root: Path) -> None:
    """What `headstart train` writes (RUN/test_predictions.json), made here from `predict` output."""
    trained = headstart.load(run)
    classes = trained.class_names
    files = sorted((p, p.parent.name) for p in test_root.rglob("*.png"))
    items = []
    for (path, label), r in zip(files, trained.predict([str(p) for p, _ in files], top=len(classes))):
        probs = None
        if r.error is None:
            probs = [0.0] * len(classes)
            for p in r.predictions:
                probs[p.index] = p.probability
        items.append({"path": str(path), "label": label, "predicted": r.predictions[0].label if probs else None,
                      "probabilities": probs, "error": r.error})
    (run / "test_predictions.json").write_text(json.dumps({"format": PREDICTIONS_FORMAT, "classes": classes,
                                                           "items": items}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run on train/val/test folders; test/ holds a damaged file; RUN/test_predictions.json as train writes it."""
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    _folder(data / "train", 10)
    _folder(data / "val", 4)
    _folder(data / "test", 6)
    (data / "test" / "red" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    headstart.train(data, root / "run", **FAST)
    _write_predictions(root / "run", data / "test")
    return root / "run", data


def _browser():
    """Playwright driving Debian's Chromium; skipped where absent, except on CI, where it must be there."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if sync_playwright is None or not os.path.exists(exe):
        if os.environ.get("CI"):
            pytest.fail("CI must test the report in a browser: install playwright (pip) and chromium (apt).")
        pytest.skip("needs playwright and /usr/bin/chromium (apt-get install chromium)")
    return sync_playwright, exe


def test_report_in_a_real_browser(trained, tmp_path):
    run, _ = trained
    sync_playwright, exe = _browser()
    t0 = time.perf_counter()
    page_file = write_report(run, max_images=30)
    assert time.perf_counter() - t0 < 30 and page_file == run / "report.html"
    text = page_file.read_text()
    assert "damaged.png" in text and "Problems" in text  # named on the page, the rest written
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from the network
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        n_images = page.evaluate("document.images.length")
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                               ".map(i => i.alt)")
        assert n_images > 10 and broken == []
        # The Data section: train found the test images that are copies of training images (the fixture makes
        # them with the same seeds) and shows each pair side by side; head did not run the label check.
        pairs = page.locator("#data .pair")
        assert pairs.count() == 12 and pairs.first.locator("img").count() >= 2  # N_PAIRS of the 18 groups
        assert "train + test" in pairs.first.inner_text() or "train + val" in pairs.first.inner_text()
        assert "Label issues" in page.locator("#data").inner_text()
        assert page.locator("#cell-view .cell:not([hidden])").count() == 0
        cell = page.locator(".cm td[data-cell]").first
        expected = int(cell.inner_text())
        cell.click()
        shown = page.locator("#cell-view .cell:not([hidden])")
        assert shown.count() == 1 and shown.locator("figure").count() == expected
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_from_data_equals_report_from_predictions(trained, tmp_path):
    run, data = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "test_predictions.json").unlink()
    from_data = write_report(copy, data).read_text()
    from_file = write_report(run).read_text()
    acc = re.compile(r"accuracy <b>([\d.]+%)</b>")
    assert acc.findall(from_data) == acc.findall(from_file) and acc.findall(from_file)
    no_data = write_report(copy).read_text()  # metrics.json only: numbers, but no images per cell
    assert "cannot list their images" in no_data and 'data-cell="' not in no_data


def test_run_without_test_split_and_damaged_inputs(tmp_path, capsys):
    data = _folder(tmp_path / "data", 6)
    run = tmp_path / "run"
    headstart.train(data, run, **{**FAST, "epochs": 2}, test_split=0.0)
    page = write_report(run).read_text()
    assert "No test split" in page and "Strategies" in page and "Settings" in page
    (run / "metrics.json").write_text("{not json")
    (run / "test_predictions.json").write_text(json.dumps({"format": "other/9"}))
    page = write_report(run).read_text()
    assert "metrics.json could not be read" in page and "test_predictions.json was not used" in page
    with pytest.raises(RunError, match="not a headstart run"):
        write_report(tmp_path / "data")
    assert main(["report", str(tmp_path / "data")]) == 2
    assert "not a headstart run" in capsys.readouterr().err
    assert main(["report", str(run), str(data)]) == 0  # DATA without test/: all of it, labelled by folder
    assert "Confusion matrix" in (run / "report.html").read_text()


def test_thousands_of_images_give_a_small_page_quickly(trained, tmp_path):
    run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    classes = headstart.load(copy).class_names
    items = []
    for i in range(3000):
        path = make_image(tmp_path / "many" / f"{i}.png", size=(24, 24), color=(i % 255, 90, 140)) \
            if i < 400 else tmp_path / "many" / f"not-written-{i}.png"  # thumbnails are sampled, never opened
        label, pred = classes[i % 3], classes[(i // 3) % 3]
        probs = [0.2, 0.2, 0.2]
        probs[classes.index(pred)] = 0.6
        items.append({"path": str(path), "label": label, "predicted": pred, "probabilities": probs, "error": None})
    (copy / "test_predictions.json").write_text(json.dumps({"format": PREDICTIONS_FORMAT, "classes": classes,
                                                            "items": items}))
    t0 = time.perf_counter()
    page = write_report(copy, max_images=200)
    assert time.perf_counter() - t0 < 30
    text = page.read_text()
    assert page.stat().st_size < 3_000_000 and "n = 3000" in text
    data_images = 3 * N_PAIRS + N_ISSUES  # the Data section's thumbnails, bounded too
    assert text.count("<img") <= 200 + 2 * 8 + 1 + data_images and "more (paths only" in text


def test_data_section_shows_label_issues_given_to_suggested(trained, tmp_path):
    run, data = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    red = str(data / "train" / "red" / "red3.png")
    (copy / "data_checks.json").write_text(json.dumps({"excluded": 2, "exclude": "doctor.csv", "copies": [],
                                                       "label_issues": [{"path": red, "label": "green",
                                                                         "suggested": "red", "score": 0.93,
                                                                         "split": "train"}]}))
    text = write_report(copy).read_text()
    section = text[text.index("<section id='data'>"):]
    section = section[:section.index("</section>")]
    assert "Likeliest label issues: 1" in section and "green → red (0.93)" in section
    assert "2 images were left out" in section and "data:image/jpeg;base64," in section
    assert "Near-identical images across splits: 0" in section
