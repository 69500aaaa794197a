"""``headstart report RUN [DATA]``: one self-contained HTML page about a trained run.

The page holds the strategy table, test metrics with per-class precision/recall, a confusion matrix whose cells
list their images, training curves, the most confident mistakes and least confident correct calls with their
Grad-CAM overlays, a reliability plot and the run's settings. Every picture is an embedded ``data:`` URI and
there is no script or font from elsewhere, so the file opens anywhere, offline. Thumbnails are sampled
(``max_images``) so a test split of thousands of images still gives a page of a few MB.

Per-image predictions come from ``RUN/test_predictions.json`` (format ``headstart-predictions/1``, written by
``train``) or, without it, are computed on DATA's test split (``DATA/test`` if it exists, else DATA).
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import HeadstartError, ImageLoadError, ReportError, RunError

__all__ = ["write_report", "ReportError", "PREDICTIONS_FORMAT", "load_predictions"]

_logger = logging.getLogger(__name__)
PREDICTIONS_FORMAT = "headstart-predictions/1"
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
THUMB = 112  # px, longest side of a thumbnail; JPEG at this size is 3-6 kB
N_EXAMPLES = 8  # confident mistakes and unsure correct calls shown, each with a Grad-CAM overlay
N_BINS = 10  # reliability plot
N_PAIRS, N_ISSUES = 12, 24  # copy groups and label issues shown in the Data section


@dataclass
class Item:
    path: str
    label: str
    predicted: str | None
    probabilities: list[float] | None
    error: str | None = None

    @property
    def confidence(self) -> float:
        return max(self.probabilities) if self.probabilities else float("nan")


@dataclass
class _Page:
    """What the sections found out, for the page's 'problems' list."""

    problems: list[str] = field(default_factory=list)
    thumbs: dict[str, str] = field(default_factory=dict)  # path → data URI ('' if unreadable)


# -- inputs --------------------------------------------------------------------------------------------------
def _read_json(path: Path, page: _Page) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        page.problems.append(f"{path.name} could not be read ({str(exc)[:200]}); its sections are left out.")
        return None


def load_predictions(path: str | os.PathLike, classes: Sequence[str]) -> list[Item]:
    """Items of a ``test_predictions.json``; raises ReportError for another format or other classes."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(d, dict) or d.get("format") != PREDICTIONS_FORMAT:
        raise ReportError(f"{path}: expected format {PREDICTIONS_FORMAT!r}; received "
                          f"{d.get('format') if isinstance(d, dict) else type(d).__name__!r}. Delete the file or "
                          f"pass DATA so predictions are computed again.")
    if list(d.get("classes", [])) != list(classes):
        raise ReportError(f"{path}: classes {d.get('classes')} differ from the run's {list(classes)}; the file "
                          f"belongs to another run. Delete it or pass DATA.")
    base = Path(path).parent
    items = []
    for it in d.get("items", []):
        p = str(it["path"])
        if not os.path.isabs(p) and not os.path.exists(p) and (base / p).exists():
            p = str(base / p)
        items.append(Item(p, str(it["label"]), it.get("predicted"), it.get("probabilities"), it.get("error")))
    return items


def _labelled_files(data: Path) -> list[tuple[str, str]]:
    """(path, class) for DATA/test/<class>/* if DATA/test exists, else DATA/<class>/* (recursive, sorted)."""
    root = data / "test" if (data / "test").is_dir() else data
    if not root.is_dir():
        raise ReportError(f"DATA must be a folder with one subfolder per class (or a test/ subfolder holding "
                          f"them); received {data}, which is not a folder.")
    out = []
    for cls in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out += [(str(f), cls.name) for f in sorted(cls.rglob("*")) if f.suffix.lower() in IMAGE_EXTENSIONS]
    if not out:
        raise ReportError(f"{root}: expected class subfolders holding images; found none.")
    return out


def _predict(run: Path, data: Path, classes: Sequence[str]) -> list[Item]:
    import headstart

    files = _labelled_files(data)
    unknown = sorted({c for _, c in files} - set(classes))
    if unknown:
        raise ReportError(f"{data}: classes {unknown} are not among the run's classes {list(classes)}; expected "
                          f"the labelled data the run was trained for.")
    _logger.info("predicting %d images of %s", len(files), data)
    results = headstart.load(run).predict([p for p, _ in files], top=len(classes))
    items = []
    for (path, label), r in zip(files, results):
        if r.error is not None or not r.predictions:
            items.append(Item(path, label, None, None, r.error or "no prediction"))
            continue
        probs = [0.0] * len(classes)
        for p in r.predictions:
            probs[p.index] = float(p.probability)
        items.append(Item(path, label, r.predictions[0].label, probs))
    return items


# -- metrics -------------------------------------------------------------------------------------------------
def _metrics(items: Sequence[Item], classes: Sequence[str]) -> dict[str, Any]:
    """The same keys as metrics.json's ``test``, from per-image predictions (unreadable images left out)."""
    from .evaluate import classification_metrics

    idx = {c: i for i, c in enumerate(classes)}
    ok = [it for it in items if it.predicted is not None]
    return classification_metrics([idx[it.label] for it in ok], [idx[it.predicted] for it in ok], list(classes))


def _reliability(items: Sequence[Item]) -> tuple[list[tuple[float, float, float, int]], float] | None:
    """Per confidence bin (low, mean confidence, accuracy, count), and the expected calibration error."""
    scored = [(it.confidence, it.predicted == it.label) for it in items if it.probabilities]
    if not scored:
        return None
    conf = np.array([c for c, _ in scored])
    right = np.array([r for _, r in scored], dtype=float)
    bins, ece = [], 0.0
    edges = np.linspace(0, 1, N_BINS + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf <= hi)
        if sel.any():
            bins.append((float(lo), float(conf[sel].mean()), float(right[sel].mean()), int(sel.sum())))
            ece += sel.mean() * abs(conf[sel].mean() - right[sel].mean())
    return bins, float(ece)


# -- pictures ------------------------------------------------------------------------------------------------
def _data_uri(im, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format=fmt, quality=80) if fmt == "JPEG" else im.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _thumb(path: str, page: _Page) -> str:
    """A data URI for the image at ``path`` ('' when it cannot be read; the page says why)."""
    if path not in page.thumbs:
        import headstart

        try:
            im = headstart.load_image(path, draft_size=(THUMB, THUMB))
            im.thumbnail((THUMB, THUMB))
            page.thumbs[path] = _data_uri(im)
        except ImageLoadError as exc:
            page.thumbs[path] = ""
            page.problems.append(f"{path}: {exc.cause} (thumbnail left out)")
        except Exception as exc:  # a damaged file must never stop the report
            page.thumbs[path] = ""
            page.problems.append(f"{path}: {type(exc).__name__}: {str(exc)[:150]} (thumbnail left out)")
    return page.thumbs[path]


def _figure(it: Item, uri: str, extra: str = "") -> str:
    name = html.escape(os.path.basename(it.path))
    title = html.escape(it.path)
    conf = f" {it.confidence:.0%}" if it.probabilities else ""
    pic = (f'<img src="{uri}" alt="{name}">' if uri else
           '<div class="broken">unreadable</div>')
    return (f'<figure title="{title}">{pic}<figcaption>{name}<br>{html.escape(it.label)} → '
            f'{html.escape(str(it.predicted))}{conf}{extra}</figcaption></figure>')


# -- sections ------------------------------------------------------------------------------------------------
def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, (list, dict)):
        return _esc(json.dumps(v))
    return _esc(v)


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    cols = list(cols or dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _strategies_section(metrics: dict | None) -> str:
    rows = (metrics or {}).get("strategies") or []
    if not rows:
        return "<section><h2>Strategies</h2><p>metrics.json has no strategy table.</p></section>"
    winner = (metrics or {}).get("strategy")
    first = ["strategy", "val_accuracy", "seconds"]
    cols = first + [c for c in dict.fromkeys(k for r in rows for k in r) if c not in first]
    note = f"<p>Chosen on validation: <b>{_esc(winner)}</b>.</p>" if winner else ""
    return f"<section><h2>Strategies</h2>{note}{_table(rows, cols)}</section>"


def _test_section(test: dict | None, source: str) -> str:
    if not test:
        return ""
    per = [{"class": c, **v} for c, v in test.get("per_class", {}).items()]
    return (f"<section><h2>Test metrics</h2><p class='big'>accuracy <b>{test['accuracy']:.1%}</b> · balanced "
            f"accuracy <b>{test['balanced_accuracy']:.1%}</b> · n = {test['n']}</p><p class='note'>{source}</p>"
            f"{_table(per, ['class', 'precision', 'recall', 'f1', 'support'])}</section>")


def _cells(items: Sequence[Item], classes: Sequence[str]) -> dict[tuple[int, int], list[Item]]:
    """Items per (true, predicted) cell, the most telling first."""
    idx = {c: i for i, c in enumerate(classes)}
    cells: dict[tuple[int, int], list[Item]] = {}
    for it in items:
        if it.predicted is not None:
            cells.setdefault((idx[it.label], idx[it.predicted]), []).append(it)
    for key, lst in cells.items():  # the most telling first: confident mistakes, unsure correct calls
        lst.sort(key=lambda it: -it.confidence if key[0] != key[1] else it.confidence)
    return cells


def _quota(cells: dict[tuple[int, int], list[Item]], max_images: int) -> dict[tuple[int, int], int]:
    """How many thumbnails each cell gets, ``max_images`` in all: round-robin over mistakes, then correct calls."""
    quota = {k: 0 for k in cells}
    left = max_images
    for group in ([k for k in cells if k[0] != k[1]], [k for k in cells if k[0] == k[1]]):
        while left > 0 and any(quota[k] < len(cells[k]) for k in group):
            for k in group:
                if left > 0 and quota[k] < len(cells[k]):
                    quota[k] += 1
                    left -= 1
    return quota


def _confusion_section(test: dict, items: Sequence[Item] | None, max_images: int, page: _Page) -> str:
    classes, cm = test["classes"], test["confusion_matrix"]
    cells = _cells(items, classes) if items else {}
    quota = _quota(cells, max_images)
    head = "".join(f"<th>{_esc(c)}</th>" for c in classes)
    rows, panels = [], []
    for i, c in enumerate(classes):
        tds = []
        for j, count in enumerate(cm[i]):
            cls = "diag" if i == j else ("err" if count else "")
            if (i, j) in cells:
                tds.append(f'<td class="{cls} click" data-cell="{i}-{j}" tabindex="0">{count}</td>')
                panels.append(_panel(i, j, classes, cells[(i, j)], quota[(i, j)], page))
            else:
                tds.append(f'<td class="{cls}">{count}</td>')
        rows.append(f"<tr><th>{_esc(c)}</th>{''.join(tds)}</tr>")
    hint = ("Click a cell to list its images (sampled: at most "
            f"{max_images} thumbnails in all, mistakes first)." if cells else
            "Per-image predictions are not available, so cells cannot list their images.")
    return (f"<section><h2>Confusion matrix</h2><p class='note'>Rows: true class; columns: predicted. {hint}</p>"
            f"<div class='scroll'><table class='cm'><thead><tr><th>true \\ predicted</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div><div id='cell-view'>{''.join(panels)}</div></section>")


def _panel(i: int, j: int, classes, lst: list[Item], shown: int, page: _Page) -> str:
    figs = "".join(_figure(it, _thumb(it.path, page)) for it in lst[:shown])
    rest = lst[shown:]
    more = ""
    if rest:
        names = "".join(f"<li>{_esc(it.path)}</li>" for it in rest[:1000])
        more = (f"<details><summary>{len(rest)} more (paths only{', first 1000' if len(rest) > 1000 else ''})"
                f"</summary><ul class='paths'>{names}</ul></details>")
    return (f'<div class="cell" id="cell-{i}-{j}" hidden><h3>true {_esc(classes[i])}, predicted '
            f'{_esc(classes[j])}: {len(lst)} image{"s" * (len(lst) != 1)}</h3><div class="grid">{figs}</div>'
            f'{more}</div>')


def _examples_section(run: Path, items: Sequence[Item], page: _Page) -> str:
    ok = [it for it in items if it.probabilities]
    wrong = sorted((it for it in ok if it.predicted != it.label), key=lambda it: -it.confidence)[:N_EXAMPLES]
    right = sorted((it for it in ok if it.predicted == it.label), key=lambda it: it.confidence)[:N_EXAMPLES]
    cams = _gradcams(run, [it.path for it in wrong + right], [it.predicted for it in wrong + right], page)
    parts = []
    for title, lst in (("Most confident mistakes", wrong), ("Least confident correct calls", right)):
        figs = "".join(_figure(it, cams.get(it.path) or _thumb(it.path, page),
                               "<br>Grad-CAM" if cams.get(it.path) else "") for it in lst)
        parts.append(f"<h3>{title}</h3>" + (f"<div class='grid wide'>{figs}</div>" if lst else "<p>none</p>"))
    note = ("Each picture shows where the model looked for the class it predicted (Grad-CAM on its last "
            "convolutional feature map; red: strongest evidence)." if cams else "")
    return f"<section><h2>Examples</h2><p class='note'>{note}</p>{''.join(parts)}</section>"


def _gradcams(run: Path, paths: list[str], targets: list[str], page: _Page) -> dict[str, str]:
    """Path → data URI of its Grad-CAM overlay; a model or image that cannot be explained is noted, not raised."""
    if not paths:
        return {}
    try:
        import headstart
        from .explain import blend, explain

        model = headstart.load(run).model
        out = {}
        for e in explain(model, paths, target=targets):
            if e.ok:
                out[e.path] = _data_uri(blend(e).resize((2 * THUMB, 2 * THUMB)))
            else:
                page.problems.append(f"{e.path}: {e.error} (no Grad-CAM)")
        return out
    except HeadstartError as exc:
        page.problems.append(f"Grad-CAM overlays left out: {exc}")
    except Exception as exc:  # the report is written at the end of training: never let a picture stop it
        _logger.warning("Grad-CAM failed: %s", exc, exc_info=True)
        page.problems.append(f"Grad-CAM overlays left out: {type(exc).__name__}: {str(exc)[:200]}")
    return {}


# -- charts (inline SVG: crisp on a phone, no script, no library) -------------------------------------------
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def _svg_lines(title: str, series: dict[str, Sequence[float]]) -> str:
    series = {k: [float(v) for v in vals if v is not None] for k, vals in series.items() if vals}
    series = {k: v for k, v in series.items() if v and all(math.isfinite(x) for x in v)}
    if not series:
        return ""
    w, h, pad = 320, 200, 32
    lo = min(min(v) for v in series.values())
    hi = max(max(v) for v in series.values())
    hi = hi if hi > lo else lo + 1
    n = max(len(v) for v in series.values())

    def xy(i: int, v: float) -> str:
        x = pad + (w - pad - 8) * (i / max(n - 1, 1))
        return f"{x:.1f},{h - pad - (h - 2 * pad) * (v - lo) / (hi - lo):.1f}"

    lines = "".join(f'<polyline fill="none" stroke="{_COLORS[k % 6]}" stroke-width="2" points="'
                    f'{" ".join(xy(i, v) for i, v in enumerate(vals))}"/>' for k, vals in enumerate(series.values()))
    legend = "".join(f'<text x="{pad + 4}" y="{14 + 13 * k}" fill="{_COLORS[k % 6]}" font-size="11">{_esc(name)}'
                     f'</text>' for k, name in enumerate(series))
    axes = (f'<line x1="{pad}" y1="{h - pad}" x2="{w - 8}" y2="{h - pad}" stroke="#888"/>'
            f'<line x1="{pad}" y1="{pad - 8}" x2="{pad}" y2="{h - pad}" stroke="#888"/>'
            f'<text x="2" y="{pad}" font-size="10">{hi:.2f}</text><text x="2" y="{h - pad}" font-size="10">'
            f'{lo:.2f}</text><text x="{w / 2}" y="{h - 8}" font-size="10" text-anchor="middle">epoch (1–{n})</text>')
    return (f'<figure class="chart"><svg viewBox="0 0 {w} {h}" role="img" aria-label="{_esc(title)}">{axes}{lines}'
            f'{legend}</svg><figcaption>{_esc(title)}</figcaption></figure>')


def _curves_section(run: Path, metrics: dict | None) -> str:
    charts = []
    for name, hist in ((metrics or {}).get("histories") or {}).items():
        if not isinstance(hist, dict):
            continue
        losses = {k: v for k, v in hist.items() if "loss" in k and isinstance(v, list)}
        accs = {k: v for k, v in hist.items() if "acc" in k and isinstance(v, list)}
        charts += [_svg_lines(f"{name}: loss", losses), _svg_lines(f"{name}: accuracy", accs)]
    charts = [c for c in charts if c]
    if not charts and (run / "training_curves.png").is_file():
        try:
            from PIL import Image

            with Image.open(run / "training_curves.png") as im:
                im.thumbnail((900, 900))
                charts = [f'<img class="full" src="{_data_uri(im, "PNG")}" alt="training curves">']
        except Exception as exc:  # noqa: BLE001 - a damaged plot only loses this picture
            charts = [f"<p>training_curves.png could not be read ({_esc(exc)}).</p>"]
    body = "".join(charts) or ("<p>No training curves: the strategy that ran has no epochs (e.g. probe, a "
                               "logistic regression).</p>")
    return f"<section><h2>Training curves</h2><div class='charts'>{body}</div></section>"


def _reliability_section(items: Sequence[Item]) -> str:
    rel = _reliability(items)
    if rel is None:
        return ""
    bins, ece = rel
    s, pad = 300, 30
    span = s - 2 * pad
    bars = "".join(
        f'<rect x="{pad + lo * span:.1f}" y="{s - pad - acc * span:.1f}" width="{span / N_BINS - 2:.1f}" '
        f'height="{acc * span:.1f}" fill="#1f77b4" opacity="0.8"><title>confidence {conf:.2f}: accuracy {acc:.2f} '
        f'(n={cnt})</title></rect>' for lo, conf, acc, cnt in bins)
    diag = f'<line x1="{pad}" y1="{s - pad}" x2="{s - pad}" y2="{pad}" stroke="#d62728" stroke-dasharray="4"/>'
    axes = (f'<line x1="{pad}" y1="{s - pad}" x2="{s - pad}" y2="{s - pad}" stroke="#888"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{s - pad}" stroke="#888"/>'
            f'<text x="{s / 2}" y="{s - 6}" font-size="11" text-anchor="middle">confidence (top-1 probability)</text>'
            f'<text x="10" y="{s / 2}" font-size="11" transform="rotate(-90 10 {s / 2})" text-anchor="middle">'
            f'accuracy</text>')
    rows = [{"confidence from": f"{lo:.1f}", "mean confidence": c, "accuracy": a, "images": n}
            for lo, c, a, n in bins]
    return (f"<section><h2>Calibration</h2><p>Expected calibration error <b>{ece:.3f}</b> (0 = the probabilities "
            f"are exactly as often right as they claim). Bars below the dashed line: over-confident.</p>"
            f'<div class="charts"><figure class="chart"><svg viewBox="0 0 {s} {s}" role="img" '
            f'aria-label="reliability diagram">{axes}{bars}{diag}</svg><figcaption>reliability diagram'
            f"</figcaption></figure>{_table(rows)}</div></section>")


def _data_section(checks: Any, page: _Page) -> str:
    """Thumbnails of the copies that span splits (side by side) and of the likeliest label issues (given →
    suggested), from RUN/data_checks.json (written by `train`); nothing for a run from before it."""
    if not isinstance(checks, dict):
        return ""
    copies = [c for c in checks.get("copies") or [] if len(c.get("splits", [])) > 1]
    issues = checks.get("label_issues")
    parts = [f"<p>{checks['excluded']} images were left out (<code>--exclude {_esc(checks.get('exclude'))}"
             f"</code>).</p>"] if checks.get("excluded") else []
    pairs = "".join("<div class='pair'>" + "".join(_picture(p, os.path.basename(p), page) for p in c["paths"][:3]) +
                    f"<p class='note'>{_esc(' + '.join(c['splits']))}</p></div>" for c in copies[:N_PAIRS])
    parts.append(f"<h3>Near-identical images across splits: {len(copies)}</h3>" +
                 (f"<div class='pairs'>{pairs}</div>" if copies else
                  "<p>none found (SHA-256, perceptual hash + thumbnails)</p>"))
    if issues is None:
        why = checks.get("label_issues_error") or "the probe did not run, so there are no out-of-fold probabilities"
        parts.append(f"<h3>Label issues</h3><p class='note'>not checked: {_esc(why)}. "
                     f"<code>headstart doctor DATA</code> checks them.</p>")
    else:
        figs = "".join(_picture(d["path"], f"{_esc(os.path.basename(d['path']))}<br>{_esc(d['label'])} → "
                                           f"{_esc(d['suggested'])} ({d['score']:.2f})", page, escaped=True)
                       for d in issues[:N_ISSUES])
        parts.append(f"<h3>Likeliest label issues: {len(issues)} (given → suggested, score)</h3>" +
                     (f"<div class='grid'>{figs}</div>" if issues else "<p>none</p>"))
    return ("<section id='data'><h2>Data</h2><p class='note'>What <code>train</code> checked before trusting "
            "its accuracy. <code>headstart doctor DATA</code> runs every check (also duplicates within a split, "
            f"outliers, unusable images) and writes doctor.csv for <code>--exclude</code>.</p>{''.join(parts)}"
            "</section>")


def _picture(path: str, caption: str, page: _Page, *, escaped: bool = False) -> str:
    uri = _thumb(path, page)
    pic = f'<img src="{uri}" alt="{html.escape(os.path.basename(path))}">' if uri else \
        '<div class="broken">unreadable</div>'
    return (f'<figure title="{html.escape(path)}">{pic}<figcaption>{caption if escaped else html.escape(caption)}'
            f'</figcaption></figure>')


def _settings_section(train_config: dict | None, config: dict | None) -> str:
    rows = [{"setting": k, "value": v} for k, v in (train_config or {}).items()]
    if config and config.get("model"):
        rows.insert(0, {"setting": "model (config.json)", "value": config["model"]})
    body = _table(rows, ["setting", "value"]) if rows else "<p>train_config.json is missing.</p>"
    return f"<section><h2>Settings</h2>{body}</section>"


def _problems_section(page: _Page) -> str:
    if not page.problems:
        return ""
    shown = "".join(f"<li>{_esc(p)}</li>" for p in page.problems[:200])
    more = f"<li>… and {len(page.problems) - 200} more</li>" if len(page.problems) > 200 else ""
    return (f"<section class='problems'><h2>Problems ({len(page.problems)})</h2><p>The rest of the page was "
            f"written without these.</p><ul>{shown}{more}</ul></section>")


# -- the page ------------------------------------------------------------------------------------------------
_CSS = """
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#222;background:#fafafa}main{max-width:1040px;margin:auto;padding:12px}h1{font-size:1.5em;margin:.3em 0}
section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 14px;margin:12px 0}
h2{font-size:1.2em;margin:.2em 0 .5em}h3{font-size:1em}.note{color:#555;font-size:.9em}.big{font-size:1.1em}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;
padding:4px 8px;text-align:left;vertical-align:top}td{font-variant-numeric:tabular-nums}
.cm td{text-align:center;min-width:3.2em}.cm .diag{background:#e3f2e1}.cm .err{background:#fbe3e3}
.cm .click{cursor:pointer;text-decoration:underline}.cm .click:hover,.cm .sel{outline:3px solid #1f77b4}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:8px}
.grid.wide{grid-template-columns:repeat(auto-fill,minmax(170px,1fr))}figure{margin:0}
figure img,img.full{max-width:100%;height:auto;display:block;border-radius:4px}
figcaption{font-size:.75em;color:#444;word-break:break-all}.broken{background:#eee;color:#a00;padding:30px 4px;
text-align:center;font-size:.8em}.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.chart{flex:1 1 280px;max-width:380px}.chart svg{width:100%;height:auto;background:#fff}
.pairs{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px}
.pair{display:flex;flex-wrap:wrap;gap:6px;border:1px solid #eee;padding:4px}.pair figure{flex:1 1 110px}
.paths{font-size:.8em;word-break:break-all}.problems{border-color:#e0a0a0}.warn{background:#fff4d6;
border-color:#e6c36a}
"""

_JS = """
document.querySelectorAll('.cm td[data-cell]').forEach(function (td) {
  function show() {
    document.querySelectorAll('#cell-view .cell').forEach(function (d) { d.hidden = true; });
    document.querySelectorAll('.cm td.sel').forEach(function (d) { d.classList.remove('sel'); });
    var panel = document.getElementById('cell-' + td.dataset.cell);
    if (panel) { panel.hidden = false; td.classList.add('sel'); panel.scrollIntoView({block: 'nearest'}); }
  }
  td.addEventListener('click', show);
  td.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { show(); } });
});
"""


def _page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main><h1>{_esc(title)}</h1>"
            f"<p class='note'>{subtitle}</p>{''.join(s for s in sections if s)}</main>"
            f"<script>{_JS}</script></body></html>")


def _test_items(run: Path, data: Path | None, classes: Sequence[str], page: _Page) -> tuple[list[Item] | None, str]:
    """Per-image test predictions and a sentence saying where they came from."""
    saved = run / "test_predictions.json"
    if saved.is_file():
        try:
            return load_predictions(saved, classes), f"Per-image predictions from {saved.name}."
        except (OSError, ValueError, KeyError, TypeError) as exc:
            page.problems.append(f"{saved.name} was not used: {str(exc)[:300]}")
    if data is not None:
        return _predict(run, data, classes), f"Predictions computed now on {_labelled_root(data)}."
    return None, ""


def _labelled_root(data: Path) -> Path:
    return data / "test" if (data / "test").is_dir() else data


def write_report(run_dir: str | os.PathLike, data: str | os.PathLike | None = None, *, max_images: int = 200,
                 out: str | os.PathLike | None = None) -> Path:
    """Write ``RUN/report.html`` (or ``out``): one self-contained page about a trained run; return its path.

    Args:
        run_dir: a run directory written by ``headstart train``.
        data: labelled images to evaluate on when the run has no ``test_predictions.json`` (``DATA/test`` if it
            exists, else DATA, one subfolder per class).
        max_images: thumbnails in the confusion-matrix lists, mistakes first (the rest are listed by path).

    A damaged or missing image never stops the report: it is left out and named on the page. Raises RunError when
    ``run_dir`` is not a run, ReportError when DATA cannot be used.
    """
    from .atomic import atomic_write_text

    t0 = time.perf_counter()
    run = Path(run_dir)
    page = _Page()
    config = _read_json(run / "config.json", page)
    if not isinstance(config, dict) or not config.get("class_names"):
        raise RunError(f"{run} is not a headstart run: expected config.json with class_names in it (written by "
                       f"`headstart train`); received {'no such file' if config is None else 'another file'}.")
    classes = list(config["class_names"])
    metrics = _read_json(run / "metrics.json", page)
    metrics = metrics if isinstance(metrics, dict) else None
    if metrics is None:
        page.problems.append("metrics.json is missing: no strategy table, no training curves.")
    items, source = _test_items(run, Path(data) if data is not None else None, classes, page)
    for it in items or []:
        if it.error:
            page.problems.append(f"{it.path}: {it.error} (not predicted; left out of the metrics)")
        elif it.label not in classes or (it.predicted is not None and it.predicted not in classes):
            page.problems.append(f"{it.path}: class {it.label!r} or prediction {it.predicted!r} is not one of the "
                                 f"run's classes (left out)")
            it.predicted, it.probabilities = None, None
    test = _metrics(items, classes) if items else (metrics or {}).get("test")
    if items is None and test:
        source = ("Metrics from metrics.json; per-image predictions are not available (no test_predictions.json): "
                  "pass DATA to list images per cell and show examples.")
    sections = [_strategies_section(metrics)]
    if test:
        sections += [_test_section(test, source), _confusion_section(test, items, max_images, page)]
        if items:
            sections += [_examples_section(run, items, page), _reliability_section(items)]
    else:
        sections.append("<section class='warn'><h2>No test split</h2><p>This run has no test split, so there are "
                        "no test metrics, confusion matrix, examples or calibration. To get them, run "
                        "<code>headstart report RUN DATA</code> with labelled images, or train with "
                        "<code>--test-split 0.15</code>.</p></section>")
    from .run import DATA_CHECKS

    if (run / DATA_CHECKS).is_file():
        sections.append(_data_section(_read_json(run / DATA_CHECKS, page), page))
    sections += [_curves_section(run, metrics), _settings_section(_read_json(run / "train_config.json", page),
                                                                  config), _problems_section(page)]
    model = (config.get("model") or {}).get("name", "?")
    subtitle = (f"model {_esc(model)} · strategy {_esc(config.get('strategy', '?'))} · classes "
                f"{_esc(', '.join(classes))} · written {time.strftime('%Y-%m-%d %H:%M')} by headstart")
    dest = Path(out) if out is not None else run / "report.html"
    atomic_write_text(dest, _page(f"headstart report: {run.resolve().name}", subtitle, sections))
    _logger.info("wrote %s (%.0f kB) in %.1f s", dest, dest.stat().st_size / 1e3, time.perf_counter() - t0)
    return dest
