"""``ExtractConfig``: everything that determines extracted features, and how the extraction runs.

Declared with :func:`headstart.config.setting`, so each field's help, choices and checks are written once and the
``extract`` command's flags are generated from them. Imports nothing heavy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..config import BACKENDS, check_settings, parse_shape, parse_weights, setting

__all__ = ["ExtractConfig", "POOLING_MODES", "DTYPES"]

# avg / max: global pooling of a map; avgmax: both, concatenated (2×C numbers, as fastai's concat pooling);
# none: the map itself, stored channels-last (H, W, C) as Keras shows it.
POOLING_MODES = ("avg", "max", "avgmax", "none")
DTYPES = ("float32", "float16")
_EXECUTION = ("batch_size", "workers", "chunk_batches", "backend", "device", "compile", "shard")


@dataclass
class ExtractConfig:
    """Everything that determines the features; the store records it and a rerun compares it."""

    model: str = setting("lite0", "model name; see `headstart models`", short="-m", group="model")
    weights: str | None = setting("imagenet", "'imagenet' (default), 'none' for random init, or a "
                                  ".pth/.safetensors path", parse=parse_weights, group="model")
    layer: str | None = setting(None, "layer name (timm module or Keras name for VGG), or 'list' to show them; "
                                "default: the pooled pre-classifier vector (VGG: fc2)", group="features")
    pooling: str = setting("avg", "how a feature map is reduced: avg, max, avgmax (both, concatenated) or none "
                           "(keep the H×W×C map)", choices=POOLING_MODES, group="features")
    input_shape: tuple[int, int, int] | None = setting(
        None, "HEIGHT,WIDTH of the network input (default: the weights' size)", parse=parse_shape,
        metavar="H,W", group="features")
    dtype: str = setting("float32", "stored precision", choices=DTYPES, group="features")
    draft: bool = setting(True, "reduced-size JPEG decoding where the features stay equal (--no-draft: full "
                          "size; default on)", group="features")
    capture: str = setting("output", "'input': what enters `layer` (the cut point of partial fine-tuning)",
                           choices=("output", "input"), api_only="used by train's partial strategy")
    gpu_decode: bool = setting(False, "decode JPEGs on the GPU (nvJPEG) and resize there; with --device cuda",
                               group="execution")
    # Execution settings: they change speed, not the features (the backends agree within backends.PARITY_TOL).
    batch_size: int | None = setting(None, "images per forward pass (default: 4 in each CPU worker; on a GPU, the "
                                     "largest that fits)", minimum=1, group="execution")
    workers: int | None = setting(None, "processes that decode and run the network (default: one per core; 0 runs "
                                  "everything in this process)", minimum=0, group="execution")
    chunk_batches: int = setting(8, "batches per resumable chunk", minimum=1,
                                 api_only="a storage detail; the default resumes within seconds")
    backend: str = setting("auto", "auto (default): ONNX Runtime on a CPU when installed, parity-checked and "
                           "faster, else PyTorch; -v prints the choice, the store's meta.json records it",
                           choices=BACKENDS, group="execution")
    device: str | None = setting(None, "where the network runs: auto (the default: CUDA if available), cpu, cuda, "
                                 "cuda:1 …",
                                 group="execution")
    compile: bool = setting(False, "torch.compile the network (torch backend; pays off on long GPU runs)",
                            group="execution")
    shard: str | None = setting(None, "R/W: extract only shard R of W (0-based) into OUT/shards, e.g. a SLURM "
                                "array task ($SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); the last shard to "
                                "finish merges them. Under torchrun the ranks shard by themselves",
                                metavar="R/W", group="execution")

    def identity(self) -> dict[str, Any]:
        """The fields that determine the features (what a rerun compares); execution settings left out."""
        d = asdict(self)
        for k in _EXECUTION:
            d.pop(k)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d

    def check(self) -> "ExtractConfig":
        check_settings(self)
        if self.shard is not None:
            from ..distributed import parse_shard

            parse_shard(self.shard)
        return self
