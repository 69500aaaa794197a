"""Per-epoch checkpoints, so that `headstart train --resume` continues an interrupted run (kill -9 included).

``OUT/.checkpoints/run.json`` fingerprints the run (configuration and data); each training loop (``fit``) writes
``<name>.safetensors`` (weights, best weights, optimizer tensors, random-number states) and then ``<name>.json``
(epoch, history, scheduler, early-stopping state) after an epoch, both atomically: the JSON file is the marker
that a checkpoint is whole. No pickle: tensors go to safetensors, everything else to JSON.

A save that would cost more than the training it protects is skipped (``worth_saving``): the seed's
``flatten,dense:1024:relu`` head on cached features has 64 M parameters, so a checkpoint is 1 GB (weights, best
weights, two AdamW moments) written in ~5 s after an epoch of ~0.5 s. ``--resume`` then replays from the previous
checkpoint, which gives the same result (the random-number states are in it).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..atomic import atomic_write_json, atomic_write_safetensors, fsync_dir
from ..errors import HeadstartError

__all__ = ["Checkpoints", "CHECKPOINT_DIR"]

CHECKPOINT_DIR = ".checkpoints"
_FORMAT = "headstart-checkpoint/1"
_MEASURED_BYTES = 32 << 20  # a save at least this large measures the disk's speed (smaller ones: mostly fsync)
_CHEAP_SECONDS = 1.0  # a save expected to take less is always made


@dataclass
class Checkpoints:
    root: Path  # OUT/.checkpoints
    resume: bool
    bytes_per_second: float | None = field(default=None, compare=False)  # measured by the last large save

    @classmethod
    def open(cls, out: Path, fingerprint: dict[str, Any], resume: bool) -> "Checkpoints":
        root = out / CHECKPOINT_DIR
        run = root / "run.json"
        key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
        if run.is_file():
            old = json.loads(run.read_text()).get("key")
            if not resume:
                raise HeadstartError(
                    f"{out} holds checkpoints of an interrupted training run ({root}). Pass --resume "
                    f"(resume=True) to continue it, or delete {root} to start over.")
            if old != key:
                raise HeadstartError(
                    f"--resume: the checkpoints in {root} were made with another configuration or other data; "
                    f"run with the same arguments, or delete {root} to start over.")
        else:
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run, {"format": _FORMAT, "key": key, "fingerprint": fingerprint})
        return cls(root, resume)

    def spent(self) -> float:
        """Seconds the training loops of the interrupted run had already used (so `auto` keeps to its budget)."""
        if not self.resume:
            return 0.0
        return sum(json.loads(p.read_text())["history"]["seconds"] for p in self.root.glob("*.json")
                   if p.name != "run.json")

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- one training loop ---------------------------------------------------------------------------------

    @staticmethod
    def size_of(module: torch.nn.Module, opt: torch.optim.Optimizer, validated: bool) -> int:
        """What :meth:`save` writes for a loop: the weights, the best ones (with validation) and AdamW's two
        moments of the parameters it trains (frozen layers have none)."""
        trained = [p for g in opt.param_groups for p in g["params"] if p.requires_grad]
        return _bytes(module.state_dict().values()) * (2 if validated else 1) + 2 * _bytes(trained)

    def worth_saving(self, size: int, unsaved_seconds: float) -> bool:
        """Whether to save ``size`` bytes now: always, unless the save is expected to take longer than both
        ``_CHEAP_SECONDS`` and the ``unsaved_seconds`` of training since the last one (what an interruption would
        cost)."""
        if self.bytes_per_second is None:
            return True  # not measured yet: save, and measure
        return size / self.bytes_per_second <= max(_CHEAP_SECONDS, unsaved_seconds)

    def save(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, sched, best_state: dict | None,
             generator: torch.Generator | None, state: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
        if best_state is not None:
            tensors.update({f"best.{k}": v for k, v in best_state.items()})
        osd = opt.state_dict()
        for pid, st in osd["state"].items():
            tensors.update({f"opt.{pid}.{k}": v for k, v in st.items() if torch.is_tensor(v)})
        tensors["rng.torch"] = torch.get_rng_state()
        if generator is not None:
            tensors["rng.loader"] = generator.get_state()
        tensors = {k: v.detach().cpu().clone() for k, v in tensors.items()}  # clone: no shared storage
        atomic_write_safetensors(self.root / f"{name}.safetensors", tensors, {"format": _FORMAT})
        sched_state = sched.state_dict()  # its lr_lambdas are the schedules' fields (plain numbers), or None
        atomic_write_json(self.root / f"{name}.json", {
            "format": _FORMAT, **state, "param_groups": osd["param_groups"], "scheduler": sched_state,
            "has_best": best_state is not None})
        fsync_dir(self.root)
        size = _bytes(tensors.values())
        if size >= _MEASURED_BYTES:
            self.bytes_per_second = size / max(time.perf_counter() - t0, 1e-6)

    def restore(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, sched,
                generator: torch.Generator | None) -> tuple[dict[str, Any], dict | None] | None:
        """Load the last epoch of loop ``name`` into the objects; returns (state, best weights), or None."""
        meta = self.root / f"{name}.json"
        if not (self.resume and meta.is_file()):
            return None
        try:
            return self._load(meta, module, opt, sched, generator)
        except Exception as exc:  # damaged or edited by hand: say which file, and how to go on
            raise HeadstartError(f"--resume: the checkpoint {meta} (with its .safetensors) is damaged "
                                 f"({type(exc).__name__}: {exc}). Delete {self.root} to start the run over.") from exc

    def _load(self, meta: Path, module: torch.nn.Module, opt: torch.optim.Optimizer, sched,
              generator: torch.Generator | None) -> tuple[dict[str, Any], dict | None]:
        name = meta.stem
        state = json.loads(meta.read_text())
        tensors = load_file(str(self.root / f"{name}.safetensors"))
        module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if state["has_best"] else None
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, pid, field = k.split(".", 2)
                opt_state.setdefault(int(pid), {})[field] = v
        opt.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
        sched_state = state.pop("scheduler")
        lambdas = sched_state.get("lr_lambdas") or [None] * len(opt.param_groups)  # older checkpoints: none
        sched.load_state_dict({**sched_state, "lr_lambdas": lambdas})
        torch.set_rng_state(tensors["rng.torch"])
        if generator is not None and "rng.loader" in tensors:
            generator.set_state(tensors["rng.loader"])
        return state, best


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
