"""The shape of the code (issue 10): dependencies, the package face, settings as the one source of flags,
strategies as data, start-up without torch, training on the chosen device."""
from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import headstart
from headstart.cli import build_parser, main
from conftest import make_image

SRC = Path(headstart.__file__).parent


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every `from X import` in a module of the package."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            out.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
    return out


def test_no_module_imports_a_private_module_of_another_package():
    offenders = []
    for path in SRC.rglob("*.py"):
        own = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
        for module, line in _imports(path):
            parts = module.split(".")
            private = [i for i, p in enumerate(parts) if p.startswith("_") and p not in ("__init__",)]
            if not private:
                continue
            owner = ".".join(parts[:private[0]])  # the package the private module belongs to
            # allowed: the importer's own package or one enclosing it (e.g. the root's _version.py)
            if not (own == owner or own.startswith(owner + ".")):
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not offenders, offenders


def test_no_function_shadows_a_submodule():
    """`import headstart.train` used to bind the function; now every public name is a function or a module."""
    submodules = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert not submodules & set(headstart.__all__), submodules & set(headstart.__all__)
    import headstart.training as training

    assert callable(headstart.train) and callable(headstart.classify) and training.train is headstart.train


def _modules_after(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                       capture_output=True, text=True, check=True)
    return set(r.stdout.split())


def test_package_face_and_cli_parser_import_nothing_heavy():
    mods = _modules_after("import headstart, headstart.cli; headstart.cli.build_parser()")
    heavy = {"torch", "timm", "torchvision", "sklearn", "matplotlib", "numpy", "onnxruntime"}
    assert not heavy & mods, heavy & mods


def test_every_setting_has_a_flag_or_says_why_not():
    from headstart.features import ExtractConfig
    from headstart.training import TrainConfig

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    for command, cls in (("train", TrainConfig), ("extract", ExtractConfig)):
        dests = {a.dest for a in sub.choices[command]._actions}
        for f in dataclasses.fields(cls):
            assert f.name in dests or f.metadata.get("api_only"), f"{cls.__name__}.{f.name} has no flag"
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
    assert {"--layer-decay", "--weight-decay", "--metric"} <= set(sub.choices["train"]._option_string_actions)


def test_strategy_records_name_real_settings_and_drive_the_checks():
    from headstart.training import STRATEGIES, TrainConfig, check_applies

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for s in STRATEGIES.values():
        assert set(s.settings) <= names, (s.name, set(s.settings) - names)
        assert s.epochs_setting is None or s.epochs_setting in names
    assert STRATEGIES["finetune"].head_first and STRATEGIES["finetune"].warmup_epochs < 1
    with pytest.raises(headstart.HeadstartError, match="layer-decay does not apply to strategy 'head'"):
        check_applies("head", {"layer_decay"})
    check_applies("finetune", {"layer_decay"})  # used by finetune: fine
    with pytest.raises(headstart.HeadstartError, match="must be one of"):
        TrainConfig(strategy="bogus").check()


@pytest.mark.realweights
def test_cached_exports_serve_classify_extract_predict_without_torch(tmp_path, image_folder):
    """With the ONNX export cached, these commands import no torch: not in this process, not in the workers."""
    env_home = tmp_path / "home"
    photo = make_image(tmp_path / "one.jpg", size=(300, 240), noise=30)
    data = tmp_path / "data"
    for cls, color in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
        for i in range(6):
            make_image(data / cls / f"{i}.png", color=color, noise=30, seed=i)
    probe = ("import sys, os; os.environ['HEADSTART_HOME'] = sys.argv[1]; from headstart.cli import main; "
             "code = main(sys.argv[2:]); sys.stderr.write('TORCH=%s\\n' % ('torch' in sys.modules)); sys.exit(code)")

    def run(*args):
        r = subprocess.run([sys.executable, "-c", probe, str(env_home), *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stderr

    assert "TORCH=True" in run("classify", str(photo))  # the first call builds the model and exports it
    assert "TORCH=False" in run("classify", str(photo), "-v")
    assert "TORCH=True" in run("extract", str(image_folder), "--out", str(tmp_path / "f1"), "-q")
    err = run("extract", str(image_folder), "--out", str(tmp_path / "f2"), "-q", "-v")
    assert "TORCH=False" in err and "found without building the model" in err
    assert "TORCH=False" in run("extract", str(image_folder), "--out", str(tmp_path / "f2"), "-q")  # cache hit
    f1, f2 = headstart.FeatureSet.load(tmp_path / "f1"), headstart.FeatureSet.load(tmp_path / "f2")
    assert (f1.features[:] == f2.features[:]).all()
    run("train", str(data), "--out", str(tmp_path / "run"), "--strategy", "probe", "-q")
    run("export", str(tmp_path / "run"))
    assert "TORCH=False" in run("predict", str(tmp_path / "run"), str(photo))
    assert "TORCH=False" in run("evaluate", str(tmp_path / "run"), str(data), "--include-seen")


def test_verbose_after_the_subcommand_logs_the_backend_choice(tmp_path, image_folder, caplog):
    img = str(sorted(image_folder.rglob("*.png"))[0])
    args = ["classify", img, "--model", "test_resnet", "--weights", "none", "--backend", "torch"]
    with caplog.at_level("INFO"):
        assert main([*args, "-v"]) == 0
    assert any("backend: torch on cpu (requested" in r.getMessage() for r in caplog.records)
    assert main(["-v", *args]) == 0  # and before it, as before


def test_training_runs_on_the_chosen_device(tmp_path, image_folder, capsys):
    """`--device` reaches the training loop (the CPU stands in for a GPU here) and is recorded; an unavailable
    device is refused before any work, and the run folder is not left behind."""
    import torch

    from headstart.training._loop import fit

    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x):
            seen.append((x.device, self.lin.weight.device))
            return self.lin(x)

    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    loader = [(x, y)]
    module = Probe()
    fit(module, loader, loader, [{"params": module.parameters(), "lr": 0.1}], epochs=1, device=torch.device("cpu"),
        progress=False)
    assert seen and all(a == b == torch.device("cpu") for a, b in seen)
    run = tmp_path / "run"
    args = ["train", str(image_folder), "--out", str(run), "--model", "test_resnet", "--weights", "none",
            "--strategy", "head", "--epochs", "1", "--input-shape", "32,32", "--workers", "0", "-q"]
    assert main([*args, "--device", "cpu"]) == 0
    assert json.loads((run / "metrics.json").read_text())["device"] == "cpu"
    if not torch.cuda.is_available():
        assert main([*args[:3], str(tmp_path / "gpu"), *args[4:], "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "gpu").exists()


def test_failed_commands_leave_no_empty_output_folder(tmp_path, image_folder, capsys):
    out = tmp_path / "feats"
    assert main(["extract", str(image_folder), "--out", str(out), "--model", "test_resnet", "--weights", "none",
                 "--layer", "nope"]) == 2
    assert "Valid layers" in capsys.readouterr().err and not out.exists()
    run = tmp_path / "run"
    assert main(["train", str(image_folder), "--out", str(run), "--model", "test_resnet", "--weights", "none",
                 "--strategy", "partial", "--unfreeze-from", "nope", "-q"]) == 2
    assert not run.exists()
