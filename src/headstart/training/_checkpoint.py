"""Per-epoch checkpoints, so that `headstart train --resume` continues an interrupted run (kill -9 included).

``OUT/.checkpoints/run.json`` fingerprints the run (configuration and data); each training loop (``fit``) writes
``<name>.safetensors`` (weights, best weights, optimizer tensors, random-number states) and then ``<name>.json``
(epoch, history, scheduler, early-stopping state) after every epoch, both atomically: the JSON file is the marker
that a checkpoint is whole. No pickle: tensors go to safetensors, everything else to JSON.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..atomic import atomic_write_json, atomic_write_safetensors, fsync_dir
from ..errors import HeadstartError

__all__ = ["Checkpoints", "CHECKPOINT_DIR"]

CHECKPOINT_DIR = ".checkpoints"
_FORMAT = "headstart-checkpoint/1"


@dataclass
class Checkpoints:
    root: Path  # OUT/.checkpoints
    resume: bool

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

    def save(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, sched, best_state: dict | None,
             generator: torch.Generator | None, state: dict[str, Any]) -> None:
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
        sched_state = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
        atomic_write_json(self.root / f"{name}.json", {
            "format": _FORMAT, **state, "param_groups": osd["param_groups"], "scheduler": sched_state,
            "has_best": best_state is not None})
        fsync_dir(self.root)

    def restore(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, sched,
                generator: torch.Generator | None) -> tuple[dict[str, Any], dict | None] | None:
        """Load the last epoch of loop ``name`` into the objects; returns (state, best weights), or None."""
        meta = self.root / f"{name}.json"
        if not (self.resume and meta.is_file()):
            return None
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
        sched.load_state_dict({**state.pop("scheduler"), "lr_lambdas": [None] * len(opt.param_groups)})
        torch.set_rng_state(tensors["rng.torch"])
        if generator is not None and "rng.loader" in tensors:
            generator.set_state(tensors["rng.loader"])
        return state, best
