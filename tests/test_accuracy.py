"""Issue 11: views (trained on, averaged at prediction) and cross-validated choices for the cheap strategies.

Tiny random-weight timm models on generated images: real computation, seconds per test.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import headstart
from headstart.errors import HeadstartError
from headstart.training import TrainConfig, train
from headstart.training import _train as run_module
from headstart.views import VIEW_SETS, apply_views, average_views, with_views

from conftest import spy_image_reads

FAST = dict(model="test_efficientnet", weights=None, input_shape=(64, 64, 3), workers=0)


def _gradient_image(path: Path, cls: int, seed: int) -> Path:
    """Two classes that differ in texture, not orientation: a flip of an image is still its class."""
    rng = np.random.default_rng(seed)
    arr = rng.normal(128, 20 if cls == 0 else 60, (40, 40, 3))
    arr[: 10 + seed % 7, :, 0] += 60  # an orientation cue that changes with the view
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def textures(tmp_path):
    root = tmp_path / "textures"
    for i in range(18):
        for cls, name in enumerate(("smooth", "rough")):
            split = "test" if i < 4 else "train"
            _gradient_image(root / split / name / f"{name}{i}.png", cls, i + 100 * cls)
    return root


def test_views_are_the_dihedral_group_in_numpy():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    v = apply_views(x, "dihedral")
    assert v.shape == (16, 3, 4, 4) and v.flags.c_contiguous
    assert np.array_equal(v[:2], x)  # view 0 is the image itself
    distinct = {v[k * 2].tobytes() for k in range(8)}
    assert len(distinct) == 8
    assert np.array_equal(apply_views(x, "hflip")[2:], x[..., ::-1])
    assert apply_views(x, "none") is x
    p = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    assert np.allclose(average_views(p, 8), p.reshape(8, 2, 3).mean(0))
    fn = lambda b: b.reshape(len(b), -1)[:, :3]  # noqa: E731
    assert with_views(fn, "none") is fn
    with pytest.raises(headstart.HeadstartError, match="square"):
        from headstart.views import check_views
        check_views("dihedral", (64, 48))


def _manual_probs(model, files, views):
    """The in-process model on every view of each file, averaged: what every prediction path must give."""
    x = torch.stack([model.preprocessing.transform()(headstart.load_image(f)) for f in files]).numpy()
    with torch.no_grad():
        p = torch.softmax(model.eval()(torch.from_numpy(apply_views(x, views))), 1).numpy()
    return average_views(p, len(VIEW_SETS[views]))


def test_predict_evaluate_and_onnx_agree_with_the_model_views_included(tmp_path, textures):
    r = train(textures, tmp_path / "run", strategy="probe", views="dihedral", power_norm="on", cv_folds=3,
              progress=False, **FAST)
    run = headstart.load(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["views"] == "dihedral"
    assert run.model.config.head == "avg,sqrt" and r.table[0]["power_norm"] == "on"  # the sqrt layer travels too
    assert run.views == "dihedral" and r.model.views == "dihedral"
    files = sorted(str(p) for p in (textures / "test").rglob("*.png"))
    expected = _manual_probs(r.model, files, "dihedral")
    assert not np.allclose(expected, _manual_probs(r.model, files, "none"), atol=1e-4)  # views change something

    def probs(results):
        return np.array([[{p.label: p.probability for p in res.predictions}[c] for c in run.class_names]
                         for res in results])

    np.testing.assert_allclose(probs(run.predict(files, top=2, backend="torch")), expected, atol=1e-5)
    pil = [Image.open(f).convert("RGB") for f in files[:3]]
    np.testing.assert_allclose(probs(run.predict(pil, top=2, backend="torch")), expected[:3], atol=1e-5)
    test_preds = json.loads((tmp_path / "run" / "test_predictions.json").read_text())["items"]
    by_path = {it["path"]: it["probabilities"] for it in test_preds}
    np.testing.assert_allclose([by_path[f] for f in files], expected, atol=1e-5)  # train's own test scoring
    ev = run.evaluate(textures, backend="torch")
    assert ev["n"] == len(files) and ev["accuracy"] == pytest.approx(
        float((expected.argmax(1) == [run.class_names.index(Path(f).parent.name) for f in files]).mean()))
    from headstart.export import export_run

    record = export_run(tmp_path / "run")
    assert record["views"] == "dihedral"
    onnx_run = headstart.load(tmp_path / "run")
    predictor = onnx_run.predictor(backend="onnxruntime")
    assert predictor.info.name == "onnxruntime" and predictor.views == "dihedral"
    np.testing.assert_allclose(probs(onnx_run.predict(files, top=2, backend="onnxruntime")), expected, atol=1e-4)
    assert onnx_run.evaluate(textures, backend="onnxruntime")["accuracy"] == ev["accuracy"]
    import subprocess

    code = ("import sys, json, headstart; r = headstart.load(sys.argv[1]).predict(sys.argv[2:], top=2); "
            "print(json.dumps(['torch' in sys.modules, [[p.probability for p in x.predictions] for x in r]]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), *files[:2]], capture_output=True,
                         text=True, check=True).stdout
    torch_loaded, top = json.loads(out)
    assert not torch_loaded  # the ONNX path with views stays torch-free
    np.testing.assert_allclose(np.sort(expected[:2], 1)[:, ::-1], top, atol=1e-4)


def test_views_none_and_no_cv_reproduce_the_validation_choice(tmp_path, textures):
    """--views none --power-norm off --cv-folds 0 is headstart before issue 11: C chosen on the val split, fit on
    train only, one view at prediction (the backend function is not even wrapped)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    from headstart.data import load_splits
    from headstart.training._probe import C_GRID

    r = train(textures, tmp_path / "run", strategy="probe", views="none", power_norm="off", cv_folds=0,
              progress=False, **FAST)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["views"] == "none"
    splits = load_splits(textures, val_split=0.15, test_split=0.15, seed=0)
    from headstart.features import ExtractConfig
    from headstart.training._data import cached_activations

    ecfg = ExtractConfig(model="test_efficientnet", weights=None, input_shape=(64, 64, 3), workers=0, device="cpu")
    xtr, ytr, _ = cached_activations(splits.train, splits.classes, ecfg, progress=False)
    xva, yva, _ = cached_activations(splits.val, splits.classes, ecfg, progress=False)
    sc = StandardScaler().fit(xtr.numpy())
    best = None
    for c in C_GRID:  # the probe as it was written before issue 11
        clf = LogisticRegression(C=c, max_iter=3000).fit(sc.transform(xtr.numpy()), ytr.numpy())
        p = clf.predict_proba(sc.transform(xva.numpy()))
        key = ((p.argmax(1) == yva.numpy()).mean(), -log_loss(yva.numpy(), p, labels=[0, 1]))
        if best is None or key > best[0]:
            best = (key, c, clf)
    assert r.table[0]["C"] == best[1] and "cv" not in r.table[0]
    files = [it.path for it in splits.test]
    x = torch.stack([r.model.preprocessing.transform()(headstart.load_image(f)) for f in files])
    with torch.no_grad():
        feats = r.model.backbone(x)
    ref = best[2].predict_proba(sc.transform(feats.mean((2, 3)).numpy()))  # the avg-pooled features
    run = headstart.load(tmp_path / "run")
    predictor = run.predictor(backend="torch")
    assert predictor.batch_fn() is predictor.fn
    got = run.predict(files, top=2, backend="torch")
    got = np.array([[{p.label: p.probability for p in g.predictions}[c] for c in run.class_names] for g in got])
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_power_norm_in_the_model_is_the_transform_the_probe_was_fitted_on(tmp_path, textures):
    """The logistic regression is fitted on signed_sqrt(features) in numpy; the run computes the same function with
    its head's `sqrt` layer: a refit by hand on the same features gives the run's probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from headstart.data import load_splits
    from headstart.features import ExtractConfig
    from headstart.models._heads import SignedSqrt, signed_sqrt
    from headstart.training._data import cached_activations

    r = train(textures, tmp_path / "run", strategy="probe", views="none", power_norm="on", cv_folds=0,
              progress=False, **FAST)
    assert [type(m) for m in r.model.head].count(SignedSqrt) == 1
    splits = load_splits(textures, val_split=0.15, test_split=0.15, seed=0)
    ecfg = ExtractConfig(model="test_efficientnet", weights=None, input_shape=(64, 64, 3), workers=0, device="cpu")
    xtr, ytr, _ = cached_activations(splits.train, splits.classes, ecfg, progress=False)
    xtr = signed_sqrt(xtr.numpy())
    sc = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=r.table[0]["C"], max_iter=3000).fit(sc.transform(xtr), ytr.numpy())
    files = [it.path for it in splits.test]
    xte, _, _ = cached_activations(splits.test, splits.classes, ecfg, progress=False)
    ref = clf.predict_proba(sc.transform(signed_sqrt(xte.numpy())))
    got = headstart.load(tmp_path / "run").predict(files, top=2, backend="torch")
    got = np.array([[{p.label: p.probability for p in g.predictions}[c] for c in splits.classes] for g in got])
    np.testing.assert_allclose(got, ref, atol=1e-4)
    t = torch.tensor([-4.0, 0.0, 0.25, 9.0], requires_grad=True)
    signed_sqrt(t).sum().backward()  # trainable through: a finite slope at 0
    assert torch.isfinite(t.grad).all() and signed_sqrt(t)[1] == 0
    np.testing.assert_allclose(signed_sqrt(t.detach()).numpy(), signed_sqrt(t.detach().numpy()), rtol=1e-6)


def test_cross_validation_takes_power_norm_only_where_it_helps():
    """Classes linear in z; features z·|z| (heavy-tailed) are linear again after the signed square root, while
    features z themselves are not helped by it."""
    from headstart.training._cv import folds as _folds
    from headstart.training._probe import _search

    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 1, 12)).astype(np.float32)
    y = (z[:, 0] @ rng.normal(size=12) > 0).astype(np.int64)
    folds = _folds(y, len(y), 4, 0)
    from headstart.models import signed_sqrt

    def choose(x):
        return _search({"off": x, "on": signed_sqrt(x)}, y, folds, ("none",), "none", (None,), 2, "accuracy")

    assert choose(z * np.abs(z)).power_norm == "on"
    assert choose(z).power_norm == "off"


def test_deeper_strategies_start_under_the_probe_head_power_norm_included():
    """Linear probe, then fine-tune: partial/finetune take the probe's head — with its `sqrt` layer when the probe
    chose power normalization — and never a head of the same shapes that computes another function."""
    from headstart.models import create_model
    from headstart.training._strategies import StrategyResult, TrainContext, _best_linear_head, _start_head

    def model(head):
        return create_model("test_efficientnet", weights=None, include_top=False, head=head, classes=2)

    def ctx(*results):
        return TrainContext(splits=None, config=TrainConfig(), device=None, results=list(results))

    plain, sqrt = StrategyResult("probe", model("avg"), 0.9, 0.0), StrategyResult("probe", model("avg,sqrt"), 0.9, 0.0)
    assert TrainConfig().head == "avg,dropout:0.2"
    assert _best_linear_head(ctx(plain), model("avg,dropout:0.2")) is plain  # dropout: the identity at prediction
    assert _best_linear_head(ctx(sqrt), model("avg,dropout:0.2")) is None  # same shapes, another function
    assert _start_head(ctx(plain)) == "avg,dropout:0.2" and _start_head(ctx()) == "avg,dropout:0.2"
    assert _start_head(ctx(sqrt)) == "avg,sqrt,dropout:0.2"
    assert _best_linear_head(ctx(sqrt), model(_start_head(ctx(sqrt)))) is sqrt


def test_deeper_strategies_start_from_a_probe_head_that_never_saw_the_validation_images(textures, monkeypatch):
    """The cross-validated probe is refitted on train + val; partial/finetune are then scored on val, so the head
    they start from must be fitted on train alone (Fashion-MNIST: a start from the refit scored finetune 96.4 % on
    val and 86.2 % on test, and `auto` took it over the probe)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from headstart.data import load_splits
    from headstart.features import ExtractConfig
    from headstart.training._data import cached_activations
    from headstart.training import _probe
    from headstart.training._strategies import TrainContext, run_strategy

    fitted, twin = [], _probe._twin
    monkeypatch.setattr(_probe, "_twin", lambda *a: fitted.append(1) or twin(*a))
    config = TrainConfig(strategy="probe", views="none", power_norm="off", cv_folds=3, **FAST).check()
    splits = load_splits(textures, val_split=0.15, test_split=0.15, seed=0)
    r = run_strategy("probe", TrainContext(splits, config, torch.device("cpu"), progress=False))
    assert fitted == []  # fitted only when partial/finetune ask: `--strategy probe` never pays for it
    ecfg = ExtractConfig(model="test_efficientnet", weights=None, input_shape=(64, 64, 3), workers=0, device="cpu")
    xtr, ytr, _ = cached_activations(splits.train, splits.classes, ecfg, progress=False)
    xva, _, _ = cached_activations(splits.val, splits.classes, ecfg, progress=False)
    sc = StandardScaler().fit(xtr.numpy())
    clf = LogisticRegression(C=r.details["C"], max_iter=3000).fit(sc.transform(xtr.numpy()), ytr.numpy())
    w = r.start_state()["predictions.linear.weight"].numpy()
    b = r.start_state()["predictions.linear.bias"].numpy()
    logits = xva.numpy() @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(1, keepdims=True), clf.predict_proba(sc.transform(xva.numpy())), atol=1e-4)
    assert not torch.equal(r.start_state()["predictions.linear.weight"],
                           r.model.head.state_dict()["predictions.linear.weight"])  # the run's head: train + val
    assert fitted == [1]  # once, however often it is asked for


def test_a_bad_head_is_refused_before_any_work():
    """`--head` is read by head/partial/finetune, which `auto` reaches only after the probe's minutes of work."""
    with pytest.raises(HeadstartError, match="Cannot read head token 'sqrt:2'"):
        TrainConfig(head="avg,sqrt:2").check()
    with pytest.raises(HeadstartError, match="Cannot read head token"):
        TrainConfig(strategy="head", head="avg,dense:ten").check()
    assert TrainConfig(head="avg,sqrt,dense:8:relu").check().head == "avg,sqrt,dense:8:relu"


def test_cv_chooses_on_training_images_only_and_reports_mean_and_std(tmp_path, textures, monkeypatch):
    opened = spy_image_reads(monkeypatch)
    seen_at_choice: list[str] = []
    orig_choose = run_module.choose_winner
    monkeypatch.setattr(run_module, "choose_winner", lambda rs: (seen_at_choice.extend(opened), orig_choose(rs))[1])
    logs: list[str] = []
    r = train(textures, tmp_path / "run", strategy="probe", views="auto", cv_folds=4, metric="balanced_accuracy",
              progress=False, log=logs.append, **FAST)
    test_files = {str(p) for p in (textures / "test").rglob("*.png")}
    assert seen_at_choice and not test_files & set(seen_at_choice)
    assert test_files <= set(opened)  # test scored once, after the choice
    row = json.loads((tmp_path / "run" / "metrics.json").read_text())["strategies"][0]
    assert row["cv_folds"] == 4 and 0 <= row["cv_std"] <= row["cv_mean"] <= 1
    assert row["views"] in VIEW_SETS and "balanced accuracy" in row["cv"]
    assert row["val_balanced_accuracy"] == pytest.approx(row["cv_mean"], abs=1e-4)
    assert any("cross-validated" in m and "±" in m for m in logs)


def test_views_setting_is_a_train_flag_and_refused_where_it_does_nothing(capsys):
    from headstart.cli import main

    with pytest.raises(headstart.HeadstartError, match="--views does not apply"):
        TrainConfig(strategy="partial", views="dihedral").check({"views"})
    with pytest.raises(headstart.HeadstartError, match="--power-norm does not apply"):
        TrainConfig(strategy="finetune", power_norm="on").check({"power_norm"})
    try:
        code = main(["train", "--help"])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr().out
    assert code in (0, None) and "--views {auto,none,hflip,dihedral}" in out and "--cv-folds" in out
    assert "--power-norm {auto,on,off}" in out


def test_sklearn_door_uses_the_same_views(textures):
    from sklearn.linear_model import LogisticRegression

    from headstart.features import ExtractConfig
    from headstart.sklearn import FeatureExtractor, ViewsClassifier
    from headstart.training._views import view_features

    files = sorted(str(p) for p in (textures / "train").rglob("*.png"))
    labels = [Path(f).parent.name for f in files]
    fx = FeatureExtractor("test_efficientnet", weights=None).fit(files)
    mine = fx.transform_views(files[:5], "dihedral")  # V×N×D
    from headstart.data import Item

    cached, _, _ = view_features([Item(f, lab) for f, lab in zip(files[:5], labels)], ["rough", "smooth"],
                                 ExtractConfig(model="test_efficientnet", weights=None, input_shape=None, workers=0),
                                 "dihedral")  # N×V×D, as training reads them
    np.testing.assert_allclose(mine.transpose(1, 0, 2), cached, rtol=1e-4, atol=1e-4 * np.abs(cached).max())
    np.testing.assert_allclose(fx.transform(files[:5]), mine[0], rtol=0, atol=0)
    clf = ViewsClassifier(FeatureExtractor("test_efficientnet", weights=None), LogisticRegression(max_iter=2000),
                          views="dihedral").fit(files, labels)
    p = clf.predict_proba(files[:5])
    f = clf.extractor_.transform_views(files[:5], "dihedral")
    manual = np.mean([clf.estimator_.predict_proba(f[v]) for v in range(8)], axis=0)
    np.testing.assert_allclose(p, manual, atol=1e-6)
    assert clf.score(files, labels) > 0.5


def test_a_lead_within_one_standard_error_does_not_buy_the_costlier_strategy():
    from headstart.training import choose_winner
    from headstart.training._strategies import StrategyResult

    def res(name, score, n):
        return StrategyResult(name, None, score, 0.0, val_score=score, n_scored=n)

    probe, partial = res("probe", 0.877, 1968), res("partial", 0.885, 295)  # se of 88.5 % on 295: 1.9 points
    assert choose_winner([probe, partial]).name == "probe"
    assert choose_winner([res("probe", 0.85, 1968), res("partial", 0.885, 295)]).name == "partial"
    assert choose_winner([res("head", 0.9, 0), res("probe", 0.8, 0)]).name == "head"  # no count: plain maximum


def test_view_cache_keys_the_network_as_extract_does(tmp_path):
    """The view cache is keyed by the identity extract keys its networks by: other weights or another view set
    never share cached features; the same network and views always do."""
    from headstart.features import ExtractConfig, feature_identity
    from headstart.training._views import _cache_dir

    hub, rand = ExtractConfig(model="resnet18", weights="imagenet"), ExtractConfig(model="resnet18", weights=None)
    assert feature_identity(hub) != feature_identity(rand)
    assert _cache_dir(hub, "dihedral", tmp_path) != _cache_dir(rand, "dihedral", tmp_path)
    lite = ExtractConfig(model="lite0")
    assert _cache_dir(lite, "dihedral", tmp_path) == _cache_dir(ExtractConfig(model="lite0"), "dihedral", tmp_path)
    assert _cache_dir(lite, "dihedral", tmp_path) != _cache_dir(lite, "hflip", tmp_path)


def test_head_is_cross_validated_refitted_on_all_and_keeps_a_train_only_twin(textures, monkeypatch):
    """Issue 11, item 2: `head` on cached features is scored over the probe's folds of train + val, refitted on all
    of them for the folds' median epoch count, and keeps a twin fitted on train only (fitted when asked, once)."""
    from headstart.data import load_splits
    from headstart.features import ExtractConfig
    from headstart.training import _cv
    from headstart.training._data import cached_activations
    from headstart.training._strategies import TrainContext, run_strategy

    from headstart.training import _loop

    fitted, twin = [], _cv._head_twin
    monkeypatch.setattr(_cv, "_head_twin", lambda *a: fitted.append(1) or twin(*a))
    rows, fit = [], _loop.fit  # (training rows, validation rows, deadline) of every fit

    def spy(module, tr, va, *a, **kw):
        rows.append((len(tr.dataset), len(va.dataset) if va is not None else None, kw["deadline"]))
        return fit(module, tr, va, *a, **kw)

    monkeypatch.setattr(_loop, "fit", spy)
    config = TrainConfig(strategy="head", cv_folds=3, epochs=4, **FAST).check({"cv_folds"})
    splits = load_splits(textures, val_split=0.15, test_split=0.15, seed=0)
    deadline = 1e12  # a budget: the folds obey it, the refit and the twin (bounded by their epochs) do not
    r = run_strategy("head", TrainContext(splits, config, torch.device("cpu"), progress=False, deadline=deadline))
    n = len(splits.train) + len(splits.val)
    assert [(t + v, d) for t, v, d in rows[:3]] == [(n, deadline)] * 3 and all(v in (n // 3, n // 3 + 1)
                                                                              for _, v, _ in rows[:3])
    assert rows[3:] == [(n, None, None)]  # the refit: every train + val image, no validation
    assert r.cross_validated and r.details["cv_folds"] == 3 and r.n_scored == n
    assert 1 <= r.details["refit_epochs"] <= 4 and len(r.history.train_loss) == r.details["refit_epochs"]
    assert r.history.val_acc == [] and r.score == pytest.approx(r.details["cv_mean"], abs=1e-4)
    assert fitted == []
    held = r.holdout()
    assert fitted == [1] and r.holdout() is held and r.start_state() is held.head_state
    assert rows[4:] == [(len(splits.train), len(splits.val), None)]  # the twin: train only, scored on val
    ecfg = ExtractConfig(model="test_efficientnet", weights=None, input_shape=(64, 64, 3), workers=0, device="cpu")
    xva, yva, _ = cached_activations(splits.val, splits.classes, ecfg, progress=False)
    model = r.model
    model.head.load_state_dict(held.head_state)
    with torch.no_grad():
        acc = (model.head.eval()(xva).argmax(1) == yva).float().mean().item()
    assert held.val_acc == pytest.approx(acc)  # the twin's score is its own on the validation split
    with pytest.raises(HeadstartError, match="--cv-folds does not apply"):
        TrainConfig(strategy="partial", cv_folds=3).check({"cv_folds"})
    with pytest.raises(HeadstartError, match="--cv-folds does not apply to head on images"):
        TrainConfig(strategy="head", augment="light", cv_folds=3).check({"cv_folds", "augment"})


def test_strategies_scored_on_val_meet_the_cross_validated_winner_on_the_same_images():
    """Fashion-MNIST split 3: partial 89.8 % and head 88.0 % on 225 validation images against the probe's 86.1 %
    cross-validated; the probe fitted on train scores 88.9 % on those images, so it stays (it was better on test)."""
    from headstart.training import choose_winner
    from headstart.training._cv import Holdout
    from headstart.training._strategies import StrategyResult

    def cv(name, score, on_val):
        return StrategyResult(name, None, score, 0.0, details={"cv": "…"}, val_score=score, n_scored=1500,
                              twin=lambda: Holdout({}, on_val, on_val))

    def val(name, score):
        return StrategyResult(name, None, score, 0.0, val_score=score, n_scored=225)

    probe, head = cv("probe", 0.8607, 0.8889), cv("head", 0.85, 0.8800)
    assert choose_winner([probe, head, val("partial", 0.8978), val("finetune", 0.87)]).name == "probe"
    assert head.held is None  # only the cross-validated winner's twin is needed
    assert choose_winner([cv("probe", 0.8607, 0.8889), val("partial", 0.95)]).name == "partial"
    assert choose_winner([cv("probe", 0.80, 0.80), cv("head", 0.86, 0.80), val("partial", 0.82)]).name == "head"


def test_without_a_validation_split_only_the_cross_validated_probe_trains(tmp_path, textures):
    """`--val-split 0`: head/partial/finetune (and auto) have nothing to choose their epochs on, so the run is
    refused up front with what to do; the probe, cross-validated on the training images, trains."""
    with pytest.raises(HeadstartError, match="No validation images.*--strategy probe"):
        train(textures, tmp_path / "auto", val_split=0.0, progress=False, **FAST)
    assert not (tmp_path / "auto").exists()
    r = train(textures, tmp_path / "probe", strategy="probe", val_split=0.0, cv_folds=3, progress=False, **FAST)
    row = json.loads((tmp_path / "probe" / "metrics.json").read_text())["strategies"][0]
    assert r.strategy == "probe" and row["cv_folds"] == 3 and "train_only_val_accuracy" not in row


def test_native_side_is_the_images_own_size_when_larger_capped(tmp_path):
    from headstart.data import Item
    from headstart.training._data import native_side

    def items(*sides):
        out = []
        for i, s in enumerate(sides):
            p = tmp_path / f"{len(list(tmp_path.iterdir()))}.png"
            Image.new("RGB", (s, s + 20)).save(p)  # portrait: the short side counts
            out.append(Item(str(p), "a"))
        return out

    assert native_side(items(300, 300, 300), (224, 224)) == 300  # ELPV's cells
    assert native_side(items(200, 300, 320), (224, 224)) == 300  # the median
    assert native_side(items(224, 100, 224), (224, 224)) is None  # not larger: the weights' size stays
    assert native_side(items(2000, 3000), (224, 224)) == 336  # at most 1.5× per side (2.25× the compute)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert native_side([Item(str(broken), "a"), *items(300)], (224, 224)) == 300  # the loaders report it
    assert native_side([Item(str(broken), "a")], (224, 224)) is None


def test_partial_trains_at_the_images_native_size_and_the_others_at_the_weights(tmp_path):
    from conftest import make_image

    root = tmp_path / "data"
    for cls, color in (("a", (220, 40, 40)), ("b", (40, 40, 220))):
        for i in range(8):
            make_image(root / cls / f"{cls}{i}.png", size=(200, 200), color=color, noise=40, seed=i)
    fast = dict(model="test_efficientnet", weights=None, lr=1e-2, batch_size=8, epochs=2, finetune_epochs=1,
                workers=0, cv_folds=2, progress=False)  # test_efficientnet's own size: 160 px
    r = train(root, tmp_path / "auto", **fast)
    sizes = {row["strategy"]: row.get("input_size") for row in r.table}
    assert sizes == {"probe": None, "head": None, "partial": [200, 200], "finetune": [160, 160]}
    r = train(root, tmp_path / "ft", strategy="partial", **fast)
    assert r.model.config.input_shape == (200, 200, 3)
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["preprocessing"]["input_size"] == [200, 200]
    images = sorted(str(p) for p in root.rglob("*.png"))[:4]
    with torch.no_grad():
        here = torch.softmax(r.model.eval()(r.model.preprocess(images)), 1)
    loaded = [p.predictions for p in headstart.load(tmp_path / "ft").predict(images, top=2)]
    assert all(abs(top.probability - here[i, r.model.class_names.index(top.label)].item()) < 1e-5
               for i, preds in enumerate(loaded) for top in preds)
    r = train(root, tmp_path / "given", strategy="partial", input_shape=(64, 64, 3), **fast)
    assert r.model.config.input_shape == (64, 64, 3)  # --input-shape wins


def test_partial_and_finetune_predict_with_the_views_that_lead_on_val(textures, monkeypatch):
    """Issue 25, item 5: a trained partial/finetune model takes the probe's views only when they lead on the
    validation split by more than a paired standard error; the per-view probabilities are the model's own (view 0
    is the plain image), and the choice is what the run's config.json records and `predict` averages."""
    from headstart.data import load_splits
    from headstart.models import create_model
    from headstart.training import _strategies
    from headstart.training._strategies import StrategyResult, TrainContext

    splits = load_splits(textures, val_split=0.4, test_split=0.0, seed=0)
    config = TrainConfig(model="test_efficientnet", weights=None, input_shape=(32, 32, 3), workers=0)

    def model(views="none"):
        m = create_model("test_efficientnet", weights=None, include_top=False, input_shape=(32, 32, 3),
                         head="avg", classes=2)
        m.class_names, m.views = list(splits.classes), views
        return m

    probe = StrategyResult("probe", model("dihedral"), 0.9, 0.0)
    ctx = TrainContext(splits, config, torch.device("cpu"), progress=False, results=[probe])
    trained = model()
    p, y = _strategies._view_probabilities(trained, ctx, "dihedral")
    assert p.shape == (8, len(splits.val), 2) and np.allclose(p.sum(2), 1, atol=1e-5)
    with torch.no_grad():
        plain = torch.softmax(trained.eval()(trained.preprocess([it.path for it in splits.val])), 1).numpy()
    assert np.allclose(p[0], plain, atol=1e-5)  # view 0: exactly what the model predicts without views
    n = len(y)
    right = np.where(np.eye(2)[y] == 1, 0.9, 0.1)  # confident and right
    wrong = np.where(np.eye(2)[y] == 1, 0.4, 0.6)  # a little wrong

    def fake(per_view):
        monkeypatch.setattr(_strategies, "_view_probabilities", lambda m, c, v: (per_view, y))
        r = StrategyResult("partial", model(), 0.5, 0.0, val_score=0.5)
        return _strategies._with_test_views(r, ctx)

    # the plain view a little wrong on every image, the others right: the views lead by far
    r = fake(np.stack([wrong] + [right] * 7))
    assert r.model.views == "hflip" and r.val_score == 1.0 and r.details["val_by_views"]["none"] == 0.0
    assert r.details["val_by_views"]["dihedral"] == 1.0  # as good, but more views: the fewer win the tie
    # one image better with hflip (and one worse with all 8): a one-image lead is within the noise
    plain, other = right.copy(), right.copy()
    plain[0], other[1] = wrong[0], wrong[1]
    r = fake(np.stack([plain] + [other] * 7))
    assert r.details["val_by_views"] == {"none": round((n - 1) / n, 4), "hflip": 1.0, "dihedral": round((n - 1) / n, 4)}
    assert r.model.views == "none" and r.val_score == 0.5
    # a candidate auto stopped (it could no longer win) is not scored under views either
    from headstart.training._loop import History

    monkeypatch.setattr(_strategies, "_view_probabilities", lambda *a: pytest.fail("scored views"))
    stopped = StrategyResult("partial", model(), 0.5, 0.0, history=History(pruned=True))
    assert _strategies._with_test_views(stopped, ctx).model.views == "none" and "stopped" in stopped.details["views"]
    # no views chosen before (digits: orientation matters): nothing is scored at all
    ctx.results[:] = [StrategyResult("probe", model("none"), 0.9, 0.0)]
    monkeypatch.setattr(_strategies, "_view_probabilities", lambda *a: pytest.fail("scored views"))
    assert _strategies._with_test_views(StrategyResult("partial", model(), 0.5, 0.0), ctx).model.views == "none"
