import csv
import json
import sys
from pathlib import Path

import pytest
import torch

import headstart
from headstart.cli import main
from headstart.data import load_splits
from headstart.data._sources import SourceError
from headstart.training import TrainConfig, train
from headstart.training import _train as run_module
from headstart.training._loop import class_weights
from headstart.training._strategies import cut_point

from conftest import Ticking, make_image, spy_image_reads

COLORS = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220)}
# Small and fast: a tiny random-weight timm EfficientNet at 64 px, few epochs with a high learning rate.
FAST = dict(model="test_efficientnet", weights=None, input_shape=(64, 64, 3), lr=1e-2, batch_size=8, epochs=15,
            finetune_epochs=8, patience=50, workers=0)


@pytest.fixture
def three_classes(tmp_path):
    root = tmp_path / "data"
    for cls, color in COLORS.items():
        for i in range(14):
            make_image(root / cls / f"{cls}{i}.png", size=(40, 40), color=color, noise=50, seed=i)
    return root


@pytest.mark.parametrize("strategy", ["probe", "head", "partial", "finetune"])
def test_each_strategy_beats_chance(tmp_path, three_classes, strategy):
    r = train(three_classes, tmp_path / "run", strategy=strategy, progress=False, **FAST)
    assert r.strategy == strategy
    assert r.val_accuracy >= 0.6 and r.test["accuracy"] >= 0.6  # chance is 1/3
    for name in ("model.safetensors", "config.json", "metrics.json", "train_config.json", "confusion_matrix.png",
                 "training_curves.png", "classification_report.txt"):
        assert (tmp_path / "run" / name).is_file(), name


def _fresh(config: TrainConfig):
    torch.manual_seed(config.seed)
    return headstart.create_model(config.model, weights=None, include_top=False, input_shape=config.input_shape,
                                  head=config.head, classes=3)


@pytest.mark.parametrize("strategy,augment", [("head", "light"), ("partial", None), ("partial", "light")])
def test_frozen_layers_and_batchnorm_stats_unchanged(tmp_path, three_classes, strategy, augment):
    config = TrainConfig(strategy=strategy, augment=augment, **{**FAST, "epochs": 3})
    before = _fresh(config).state_dict()
    result = train(three_classes, tmp_path / "run", config, progress=False)
    after = result.model.state_dict()
    cut = cut_point(result.model, config)[1] if strategy == "partial" else "head"
    names = list(after)
    first_trainable = next(i for i, k in enumerate(names) if k.startswith(cut.removeprefix("") + ".")
                           or k.startswith("head."))
    frozen, trainable = names[:first_trainable], names[first_trainable:]
    bn_stats = [k for k in frozen if k.endswith(("running_mean", "running_var"))]
    assert bn_stats, "the frozen part must contain BatchNorm statistics for this test to mean anything"
    for k in frozen:
        assert torch.equal(before[k], after[k]), f"frozen tensor {k} changed"
    changed = [k for k in trainable if k.endswith("weight") and not torch.equal(before[k], after[k])]
    assert changed, "the trainable part did not change"


def test_save_load_gives_identical_predictions(tmp_path, three_classes):
    r = train(three_classes, tmp_path / "run", strategy="head", progress=False, **FAST)
    loaded = headstart.load(tmp_path / "run")
    images = sorted(str(p) for p in three_classes.rglob("*.png"))[:6]
    trained, reloaded = r.model.state_dict(), loaded.model.state_dict()
    assert trained.keys() == reloaded.keys() and all(torch.equal(trained[k], reloaded[k]) for k in trained)
    x = r.model.preprocess(images)
    with torch.no_grad():
        # Same weights; only the memory layout (channels_last after evaluation) may change the last float bits.
        torch.testing.assert_close(r.model.eval()(x), loaded.model(x), rtol=1e-5, atol=1e-6)
    preds = loaded.predict(images, top=2)
    assert [p.predictions[0].label for p in preds] == [r.model.class_names[i] for i in r.model(x).argmax(1)]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["class_names"] == ["blue", "green", "red"] and cfg["preprocessing"]["input_size"] == [64, 64]


def test_auto_chooses_on_validation_only(tmp_path, three_classes, monkeypatch):
    test_dir = three_classes / "test"
    split_root = tmp_path / "split"
    for cls in COLORS:
        for i, p in enumerate(sorted((three_classes / cls).glob("*.png"))):
            dest = split_root / ("test" if i < 4 else "train") / cls / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            p.rename(dest)
    opened = spy_image_reads(monkeypatch)
    seen_at_choice: list[str] = []
    orig_choose = run_module.choose_winner
    monkeypatch.setattr(run_module, "choose_winner", lambda rs: (seen_at_choice.extend(opened), orig_choose(rs))[1])
    r = train(split_root, tmp_path / "run", strategy="auto", progress=False, **{**FAST, "epochs": 3,
                                                                               "finetune_epochs": 1})
    test_files = {str(p) for p in (split_root / "test").rglob("*.png")}
    assert seen_at_choice and not test_files & set(seen_at_choice)
    assert {t["strategy"] for t in r.table} == {"probe", "head", "partial", "finetune"}
    assert r.test["n"] == 12 and not test_dir.exists()


def test_class_weights_switch_on_for_skewed_data(tmp_path):
    root = tmp_path / "d"
    for i in range(12):
        make_image(root / "many" / f"{i}.png", seed=i)
    for i in range(4):
        make_image(root / "few" / f"{i}.png", seed=i)
    splits = load_splits(root, val_split=0.25, test_split=0.0)
    w = class_weights(splits, TrainConfig().balance)
    assert w is not None and w[splits.classes.index("few")] > w[splits.classes.index("many")]
    assert class_weights(splits, "off") is None


def test_splits_errors(tmp_path):
    for i in range(4):
        make_image(tmp_path / "one" / "only" / f"{i}.png", seed=i)
    with pytest.raises(SourceError, match="at least 2"):
        load_splits(tmp_path / "one")
    root = tmp_path / "mismatch"
    for split, cls in (("train", "a"), ("train", "b"), ("val", "a"), ("val", "b"), ("test", "c")):
        for i in range(3):
            make_image(root / split / cls / f"{i}.png", seed=i)
    with pytest.raises(SourceError, match=r"\['c'\]"):
        load_splits(root)


def test_cli_train_predict_evaluate(tmp_path, three_classes, capsys):
    run = tmp_path / "run"
    assert main(["train", str(three_classes), "--out", str(run), "--model", "test_efficientnet", "--weights", "none",
                 "--strategy", "probe", "--input-shape", "64,64", "-q"]) == 0
    out = capsys.readouterr().out
    assert "probe ← winner" in out and "test accuracy (probe)" in out
    img = sorted(three_classes.rglob("red*.png"))[0]
    assert main(["predict", str(run), str(img), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred[0]["predictions"][0]["label"] == "red"
    # evaluate scores only images the run never saw: the 36 train/val images are recognized by content (issue 14)
    test_split = json.loads((run / "train_config.json").read_text())["split_counts"]["test"]
    assert main(["evaluate", str(run), str(three_classes), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert {"accuracy", "balanced_accuracy", "per_class", "confusion_matrix"} <= set(m)
    assert m["n"] == sum(test_split.values()) == 6 and m["excluded_seen"] == 36 and m["include_seen"] is False
    assert m["accuracy"] > 0.8 and len(m["confusion_matrix"]) == 3
    assert main(["evaluate", str(run), str(three_classes)]) == 0
    assert "left out 36 images this run trained or validated on" in capsys.readouterr().out
    assert main(["evaluate", str(run), str(three_classes), "--json", "--include-seen"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 42 and m["excluded_seen"] == 0 and m["include_seen"] is True
    # a second train into the finished run is refused without --overwrite (nothing is silently replaced)
    before = (run / "model.safetensors").read_bytes()
    assert main(["train", str(three_classes), "--out", str(run), "--model", "test_efficientnet", "--weights",
                 "none", "--strategy", "probe", "--input-shape", "64,64", "--seed", "3", "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (run / "model.safetensors").read_bytes() == before
    assert main(["train", str(three_classes), "--out", str(run), "--strategy", "head", "--unfreeze-from",
                 "blocks.1", "-q"]) == 2


def test_elpv_data_command(tmp_path, capsys):
    pytest.importorskip("elpv_dataset")
    assert main(["data", "elpv", str(tmp_path / "elpv")]) == 0
    root = tmp_path / "elpv"
    counts = {d: len(list((root / d).glob("*.png"))) for d in
              ("train/functional", "train/defective", "test/functional", "test/defective")}
    assert counts == {"train/functional": 1352, "train/defective": 616, "test/functional": 451,
                      "test/defective": 205}
    rows = list(csv.DictReader(open(root / "labels.csv")))
    assert len(rows) == 2624
    by_path = {r["path"]: r for r in rows}
    for r in rows[:50]:
        assert (float(r["defect_probability"]) >= 0.5) == (r["label"] == "defective")
        assert (root / r["path"]).is_file()
    assert all(Path(root / p).exists() for p in list(by_path)[:10])


@pytest.mark.parametrize("bn", ["frozen", "train"])
def test_finetune_batchnorm_statistics_policy(tmp_path, three_classes, bn):
    config = TrainConfig(strategy="finetune", bn=bn, **{**FAST, "finetune_epochs": 2})
    before = _fresh(config).state_dict()
    after = train(three_classes, tmp_path / "run", config, progress=False).model.state_dict()
    stats = [k for k in after if k.endswith("running_mean")]
    unchanged = [torch.equal(before[k], after[k]) for k in stats]
    weights_changed = any(not torch.equal(before[k], after[k]) for k in after if k.endswith("conv_stem.weight"))
    assert weights_changed  # every layer trains in both cases
    assert all(unchanged) if bn == "frozen" else not any(unchanged)


# -- interruptions: per-epoch checkpoints and --resume (issue 6) ------------------------------------------------

def _toy_fit(ckpt_dir, resume, stop_at=None):
    from headstart.training._checkpoint import Checkpoints
    from headstart.training._data import tensor_loader
    from headstart.training._loop import fit

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3))

    def on_epoch(e):
        if e == stop_at:
            raise KeyboardInterrupt

    ckpt = Checkpoints.open(ckpt_dir, {"toy": 1}, resume)
    hist = fit(module, tensor_loader(x, y, 8, train=True, seed=0), tensor_loader(x, y, 64, train=False),
               [{"params": module.parameters(), "lr": 1e-2}], epochs=6, patience=100, progress=False,
               name="toy", on_epoch=on_epoch, checkpoints=ckpt)
    return module, hist


def test_fit_trains_images_in_channels_last_and_returns_the_usual_layout():
    """Convolutions train on channels_last batches (faster); the module comes back in the default layout, so what
    is saved or exported next is unaffected."""
    from headstart.training._data import tensor_loader
    from headstart.training._loop import fit

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 16, 16, generator=g), torch.randint(0, 2, (32,), generator=g)
    seen = []

    def net():
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 4, 3)
        conv.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
        return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                   torch.nn.Linear(4, 2))

    module = net()
    fit(module, tensor_loader(x, y, 8, train=True), tensor_loader(x, y, 32, train=False),
        [{"params": module.parameters(), "lr": 1e-2}], epochs=2, progress=False)
    assert seen and all(seen)
    assert all(p.is_contiguous() for p in module.parameters())
    assert not torch.equal(net()[0].weight, module[0].weight)  # it trained


def _simulated_clock(monkeypatch) -> list[float]:
    from types import SimpleNamespace

    from headstart.training import _loop

    clock = [0.0]
    monkeypatch.setattr(_loop, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    return clock


def test_a_budget_cut_fits_the_cosine_to_the_epochs_that_are_left(tmp_path, monkeypatch):
    """With a deadline, the LR schedule shrinks to the epochs that still fit, so training ends at LR 0 instead of
    part-way down a 10-epoch cosine; the shortened schedule is in the checkpoint, so --resume keeps it."""
    from headstart.training import _loop
    from headstart.training._checkpoint import Checkpoints
    from headstart.training._data import tensor_loader

    clock = _simulated_clock(monkeypatch)
    real, made = _loop._optimizer, []

    def spy(*args):
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(_loop, "_optimizer", spy)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    module = torch.nn.Linear(5, 3)
    ckpt = Checkpoints.open(tmp_path, {"toy": 1}, False)
    # 4 batches = 4 s per epoch; 10.5 s: the first epoch shows that one more fits, and no third
    train_loader = Ticking(tensor_loader(x, y, 16, train=True, seed=0), clock)
    hist = _loop.fit(module, train_loader, tensor_loader(x, y, 64, train=False), [{"params": module.parameters(),
                     "lr": 1e-2}], epochs=10, patience=100, progress=False, deadline=10.5, name="toy",
                     checkpoints=ckpt)
    opt, sched = made[0]
    assert len(hist.train_loss) == 2 and hist.fitted_epochs == 2 and hist.stopped_early
    assert sched.last_epoch == 8 and sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # 10 epochs: 0.97e-2
    saved = json.loads((tmp_path / ".checkpoints" / "toy.json").read_text())
    assert saved["scheduler"]["lr_lambdas"] == [{"warm": 4, "total": 8}]
    assert saved["history"]["fitted_epochs"] == 2
    # --resume brings the fitted schedule back; a checkpoint from before it was saved still loads
    for lambdas, total in (([{"warm": 4, "total": 8}], 8), (None, 40)):
        saved["scheduler"]["lr_lambdas"] = lambdas
        (tmp_path / ".checkpoints" / "toy.json").write_text(json.dumps(saved))
        opt, sched = real([{"params": module.parameters(), "lr": 1e-2}], 0.01, 40, 4)
        Checkpoints.open(tmp_path, {"toy": 1}, True).restore("toy", module, opt, sched, None)
        assert sched.lr_lambdas[0].total == total and sched.last_epoch == 8


def test_the_fitted_cosine_follows_the_estimate_when_the_first_epoch_was_slow(monkeypatch):
    """A slow first epoch (8 s, then 4 s each) first fits 3 epochs into 24.5 s, then 5: the schedule lengthens
    again, the 5 epochs all train, and the last ends at LR 0."""
    from headstart.training import _loop
    from headstart.training._data import tensor_loader

    clock = _simulated_clock(monkeypatch)
    real, made = _loop._optimizer, []
    monkeypatch.setattr(_loop, "_optimizer", lambda *a: made.append(real(*a)) or made[-1])
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    module = torch.nn.Linear(5, 3)
    loader = Ticking(tensor_loader(x, y, 16, train=True, seed=0), clock)
    totals = []

    def on_epoch(e):
        loader.cost = 2.0 if e == 0 else 1.0
        totals.append(made[0][1].lr_lambdas[0].total // 4 if made else None)

    hist = _loop.fit(module, loader, tensor_loader(x, y, 64, train=False), [{"params": module.parameters(),
                     "lr": 1e-2}], epochs=10, patience=100, progress=False, deadline=24.5, on_epoch=on_epoch)
    assert totals == [10, 3, 5, 5, 5] and len(hist.train_loss) == 5 and hist.fitted_epochs == 5
    assert made[0][1].get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_a_save_dearer_than_the_training_it_protects_is_skipped_and_resume_replays(tmp_path, monkeypatch):
    """A checkpoint expected to take 5 s is written only once 5 s of training are at risk (epochs of 2 s: after
    the 3rd and the 6th), and --resume from it ends where an uninterrupted fit does."""
    from headstart.training import _loop
    from headstart.training._checkpoint import Checkpoints
    from headstart.training._data import tensor_loader

    clock = _simulated_clock(monkeypatch)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)

    def toy(ckpt, stop_at=None):
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                     torch.nn.Linear(8, 3))
        if ckpt is not None and stop_at is not None:  # a slow disk: 5 s for this module's checkpoint
            ckpt.bytes_per_second = 4 * sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 5

        def on_epoch(e):
            if e == stop_at:
                raise KeyboardInterrupt

        hist = _loop.fit(module, Ticking(tensor_loader(x, y, 8, train=True, seed=0), clock),
                         tensor_loader(x, y, 16, train=False), [{"params": module.parameters(), "lr": 1e-2}],
                         epochs=6, patience=100, progress=False, name="toy", on_epoch=on_epoch, checkpoints=ckpt)
        return module, hist

    whole, hist_whole = toy(None)
    with pytest.raises(KeyboardInterrupt):
        toy(Checkpoints.open(tmp_path, {"toy": 1}, False), stop_at=4)
    saved = json.loads((tmp_path / ".checkpoints" / "toy.json").read_text())
    assert saved["epoch"] == 2  # epochs 0, 1 and 3 were not worth their save
    resumed, hist = toy(Checkpoints.open(tmp_path, {"toy": 1}, True))
    assert hist.train_loss == hist_whole.train_loss and hist.val_acc == hist_whole.val_acc
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_large_save_measures_the_disk_and_prices_the_next(tmp_path):
    from headstart.training._checkpoint import Checkpoints
    from headstart.training._loop import _optimizer

    ckpt = Checkpoints.open(tmp_path, {"toy": 1}, False)
    big = torch.nn.Linear(3000, 3000)  # 36 MB of weights: large enough to measure the disk's speed
    opt, sched = _optimizer([{"params": big.parameters(), "lr": 1e-3}], 0.01, 10, 1)
    size = Checkpoints.size_of(big, opt, validated=True)
    assert size == 4 * 4 * 3001 * 3000  # weights, best weights, two AdamW moments (float32)
    big.bias.requires_grad_(False)  # a frozen parameter has no moments
    assert Checkpoints.size_of(big, opt, validated=False) == 4 * (3001 * 3000 + 2 * 3000 * 3000)
    assert ckpt.worth_saving(size, 0.0)  # not measured yet: save, and measure
    ckpt.save("big", big, opt, sched, None, None, {"epoch": 0})
    assert ckpt.bytes_per_second > 1e6
    assert ckpt.worth_saving(1000, 0.0)  # cheap: always
    ckpt.bytes_per_second = 1e6  # a slow disk: 144 s for `big`'s checkpoint
    assert not ckpt.worth_saving(size, 100.0) and ckpt.worth_saving(size, 150.0)


def test_resumed_fit_equals_an_uninterrupted_one(tmp_path):
    whole, hist_whole = _toy_fit(tmp_path / "a", resume=False)
    with pytest.raises(KeyboardInterrupt):
        _toy_fit(tmp_path / "b", resume=False, stop_at=3)
    saved = json.loads((tmp_path / "b" / ".checkpoints" / "toy.json").read_text())
    assert saved["epoch"] == 2 and len(saved["history"]["val_acc"]) == 3
    from headstart.training._checkpoint import Checkpoints

    # auto's budget counts the interrupted run's training time
    assert Checkpoints.open(tmp_path / "b", {"toy": 1}, True).spent() == saved["history"]["seconds"] > 0
    with pytest.raises(headstart.HeadstartError, match="--resume"):  # never silently starts over
        _toy_fit(tmp_path / "b", resume=False)
    resumed, hist = _toy_fit(tmp_path / "b", resume=True)
    assert hist.train_loss == hist_whole.train_loss and hist.val_acc == hist_whole.val_acc
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_damaged_checkpoint_is_named_not_a_crash(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _toy_fit(tmp_path, resume=False, stop_at=3)
    meta = tmp_path / ".checkpoints" / "toy.json"
    saved = json.loads(meta.read_text())
    saved["scheduler"]["lr_lambdas"] = ["edited"]
    for text in (json.dumps(saved), "{not json"):
        meta.write_text(text)
        with pytest.raises(headstart.HeadstartError, match=r"toy.json .*is damaged.*Delete .*\.checkpoints"):
            _toy_fit(tmp_path, resume=True)


def test_kill_9_during_train_then_resume(tmp_path, three_classes, capsys):
    import os
    import signal
    import subprocess
    import time

    run = tmp_path / "run"
    args = ["train", str(three_classes), "--out", str(run), "--model", "test_efficientnet", "--weights", "none",
            "--strategy", "finetune", "--input-shape", "64,64", "--finetune-epochs", "12", "--epochs", "2",
            "--patience", "50", "--workers", "0", "-q"]
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from headstart.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = run / ".checkpoints" / "finetune.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if marker.is_file() and json.loads(marker.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = json.loads(marker.read_text())
    assert not (run / "model.safetensors").exists()
    assert main(args) == 2 and "--resume" in capsys.readouterr().err
    assert main([*args[:-1], "--lr", "0.5", "--resume", "-q"]) == 2  # other arguments: refused, not mixed
    assert "another configuration" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    hist = m["histories"]["finetune"]
    n = before["epoch"] + 1
    assert len(hist["val_acc"]) == 12 and hist["val_acc"][:n] == before["history"]["val_acc"]
    assert not (run / ".checkpoints").exists() and (run / "model.safetensors").is_file()


def test_a_losing_candidate_is_stopped_before_its_epochs(monkeypatch):
    """auto's stop rule in the real loop, on the simulated clock: a candidate whose validation accuracy stays far
    below what it must beat stops after MIN_EPOCHS + 1 of its 10 epochs (`history.pruned`); the same loop with a
    target it already beats trains on; the bound follows the curve (a steep climb is let run)."""
    from headstart.training import _auto, _loop
    from headstart.training._data import tensor_loader
    from headstart.training._loop import History

    clock = _simulated_clock(monkeypatch)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    xv, yv = torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g)  # noise: nothing to learn

    def run(target):
        module = torch.nn.Linear(5, 3)
        return _loop.fit(module, Ticking(tensor_loader(x, y, 16, train=True, seed=0), clock),
                         tensor_loader(xv, yv, 32, train=False), [{"params": module.parameters(), "lr": 1e-2}],
                         epochs=10, patience=100, progress=False, deadline=1e6,
                         should_stop=_auto.LosingBound(target, epochs=10))

    t0 = clock[0]
    lost = run(0.99)
    assert lost.pruned and lost.stopped_early and len(lost.val_score) == _auto.MIN_EPOCHS + 1
    assert clock[0] - t0 == 4 * (_auto.MIN_EPOCHS + 1)  # 4 batches of 1 simulated second per epoch
    kept = run(0.0)
    assert not kept.pruned and len(kept.val_score) == 10
    bound = _auto.LosingBound(0.9, epochs=10)
    assert not bound(2, History(val_score=[0.5, 0.6, 0.7]))  # +0.1 per epoch: 7 epochs left could reach 0.9
    assert bound(3, History(val_score=[0.6, 0.7, 0.7, 0.68]))  # no gain over the last 2 epochs: 0.7 < 0.9
    assert not bound(2, History(val_score=[0.95, 0.7, 0.7]))  # it already beat the target: let it train
    assert bound(2, History(val_score=[0.5, 0.5, 0.5], fitted_epochs=4))  # the budget leaves 1 epoch


def test_auto_prints_its_plan_and_saves_what_it_measured(tmp_path, three_classes, caplog, monkeypatch):
    """The plan comes before any training, with the machine's measured rates; metrics.json holds it with each
    candidate's estimate and real seconds; a candidate the plan leaves out is not run, and says why."""
    from headstart.training import _auto

    monkeypatch.setattr(_auto, "CPU_FINETUNE_MIN_EPOCHS", 10 ** 9)  # as if every-layer epochs were dear
    with caplog.at_level("INFO"):
        r = train(three_classes, tmp_path / "run", strategy="auto", progress=False,
                  **{**{k: v for k, v in FAST.items() if k != "finetune_epochs"}, "epochs": 3})
    text = caplog.text
    assert text.index("auto: plan for 840 s on cpu") < text.index("auto: probe (")
    assert "images/s: decode" in text and "skip  on a CPU it would train" in text
    plan = json.loads((tmp_path / "run" / "metrics.json").read_text())["plan"]
    assert [c["strategy"] for c in plan["candidates"]] == ["probe", "head", "partial", "finetune"]
    assert [c["run"] for c in plan["candidates"]] == [True, True, True, False]
    assert all(c["estimate"] >= 0 and c["seconds"] > 0 for c in plan["candidates"][:3])
    assert plan["candidates"][3]["seconds"] is None and "finetune" not in {t["strategy"] for t in r.table}
    measured = plan["measured"]
    assert measured["device"] == "cpu" and measured["decode"] > 0 and measured["forward"]["64"] > 0
    assert measured["train_step"]["64"] > 0 and measured["partial_step"]["64"] > 0
    # --finetune-epochs given: the user asked for it, so the CPU rule does not leave it out
    plan = _auto.make_plan(_ctx_for(three_classes), 840.0, frozenset({"finetune_epochs"}))
    assert plan.candidates[3].run
    # the run above cached the probe's views of its train + val images (the same split): the plan prices them at
    # nothing now
    assert _auto._cached_share(_ctx_for(three_classes), "dihedral") == 1.0
    monkeypatch.setattr(_auto, "_cached_share", lambda ctx, views: 0.0)
    assert _auto.make_plan(_ctx_for(three_classes), 840.0).candidates[0].estimate > plan.candidates[0].estimate


def _ctx_for(root):
    from headstart.training._config import TrainConfig
    from headstart.training._context import TrainContext

    config = TrainConfig(**FAST).check()
    return TrainContext(load_splits(root, val_split=config.val_split, test_split=config.test_split), config,
                        torch.device("cpu"), progress=False)


def test_an_interrupted_auto_keeps_the_best_so_far_and_resume_goes_on(tmp_path, three_classes, monkeypatch):
    """Issue 25, item 8: Ctrl-C during partial leaves a complete run of the best so far (it predicts), marked
    unfinished, with the checkpoints kept; --resume runs what the plan had left and finishes the run."""
    import dataclasses

    from headstart.training import _strategies

    real = _strategies.STRATEGIES["partial"]

    def interrupted(strategy, ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(_strategies.STRATEGIES, "partial", dataclasses.replace(real, run=interrupted))
    settings = dict(strategy="auto", progress=False, **{**FAST, "epochs": 3, "finetune_epochs": 1})
    r = train(three_classes, tmp_path / "run", **settings)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert r.unfinished == "partial" and metrics["unfinished"] == "partial"
    assert {t["strategy"] for t in r.table} == {"probe", "head"} and r.strategy in ("probe", "head")
    assert (tmp_path / "run" / ".checkpoints").is_dir()
    images = sorted(str(p) for p in three_classes.rglob("*.png"))[:2]
    assert len(headstart.load(tmp_path / "run").predict(images)) == 2  # a complete run directory
    with pytest.raises(headstart.HeadstartError, match="--resume"):
        train(three_classes, tmp_path / "run", **settings)  # never silently starts over
    monkeypatch.setitem(_strategies.STRATEGIES, "partial", real)
    done = train(three_classes, tmp_path / "run", resume=True, **settings)
    assert done.unfinished is None and {t["strategy"] for t in done.table} == {"probe", "head", "partial", "finetune"}
    assert not (tmp_path / "run" / ".checkpoints").exists()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["unfinished"] is None


def test_kill_during_a_candidate_stops_it_as_ctrl_c_does():
    import os
    import signal

    from headstart.training._auto import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with _sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
