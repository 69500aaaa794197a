"""New heads on top of a backbone, described by a short string.

``"flatten,dense:1024:relu"`` is the seed's Flatten → Dense(1024, relu) top; ``"avg,dropout:0.2"`` is global
average pooling → dropout. The final ``Dense(classes)`` layer (named ``predictions``) is always appended.

Tokens: ``flatten``; ``avg`` / ``max`` (global pooling); ``dense:UNITS[:ACTIVATION]`` (relu, gelu, silu, tanh);
``dropout:RATE``; ``bn`` (batch normalization); ``sqrt`` (signed square root of each feature, "power
normalization": the ``probe`` chooses it by cross-validation, see :mod:`headstart.training._probe`).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..errors import HeadstartError

__all__ = ["Dense", "GlobalPool", "SignedSqrt", "SQRT_EPS", "signed_sqrt", "build_head", "parse_head"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "linear": nn.Identity,
                "none": nn.Identity}


class Dense(nn.Module):
    """Keras' Dense: a linear layer and its activation, one layer in the summary."""

    def __init__(self, in_features: int, units: int, activation: str = "linear"):
        super().__init__()
        self.linear = nn.Linear(in_features, units)
        self.act = _ACTIVATIONS[activation]()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class GlobalPool(nn.Module):
    """Global average or max pooling of an N×C×H×W map to N×C (Keras' GlobalAveragePooling2D)."""

    def __init__(self, mode: str = "avg"):
        super().__init__()
        if mode not in ("avg", "max"):
            raise HeadstartError(f"Pooling must be 'avg' or 'max'; received {mode!r}.")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            return x
        return x.mean((2, 3)) if self.mode == "avg" else x.amax((2, 3))


# sign(x)·(√(|x|+ε) − √ε): 0 stays 0, and the slope at 0 is 1/(2√ε) = 50 instead of infinite, so a head that
# contains it can still be trained by gradient descent (the deeper strategies, or `--head avg,sqrt`).
SQRT_EPS = 1e-4


def signed_sqrt(x):
    """The ``sqrt`` layer's function on a numpy array or a torch tensor (the probe fits on the numpy side)."""
    if isinstance(x, torch.Tensor):
        return torch.sign(x) * (torch.sqrt(x.abs() + SQRT_EPS) - SQRT_EPS ** 0.5)
    import numpy as np

    return (np.sign(x) * (np.sqrt(np.abs(x) + SQRT_EPS) - SQRT_EPS ** 0.5)).astype(x.dtype, copy=False)


class SignedSqrt(nn.Module):
    """Power normalization (Perronnin et al. 2010): evens out a few large pooled activations before a linear
    layer. It lifted the cross-validated probe by 0.8 points on Fashion-MNIST and 0.5 on digits, over five splits
    each (benchmarks/RESULTS.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return signed_sqrt(x)


def parse_head(spec: str) -> list[tuple[str, tuple]]:
    """``"flatten,dense:1024:relu"`` → ``[("flatten", ()), ("dense", (1024, "relu"))]``; raises on bad tokens."""
    out: list[tuple[str, tuple]] = []
    for raw in (t.strip() for t in spec.split(",")):
        if not raw:
            continue
        kind, *args = raw.split(":")
        try:
            if kind == "flatten" and not args:
                out.append(("flatten", ()))
            elif kind in ("avg", "max") and not args:
                out.append((kind, ()))
            elif kind == "dense" and len(args) in (1, 2):
                act = args[1] if len(args) == 2 else "linear"
                if act not in _ACTIVATIONS:
                    raise ValueError(f"activation {act!r} not in {sorted(_ACTIVATIONS)}")
                out.append(("dense", (int(args[0]), act)))
            elif kind == "dropout" and len(args) == 1 and 0.0 <= float(args[0]) < 1.0:
                out.append(("dropout", (float(args[0]),)))
            elif kind in ("bn", "sqrt") and not args:
                out.append((kind, ()))
            else:
                raise ValueError("unknown token")
        except ValueError as exc:
            raise HeadstartError(
                f"Cannot read head token {raw!r} in {spec!r} ({exc}). Expected comma-separated tokens: flatten, "
                f"avg, max, dense:UNITS[:relu|gelu|silu|tanh], dropout:RATE, bn, sqrt; e.g. 'flatten,dense:1024:relu'."
            ) from None
    return out


def build_head(spec: str, feature_shape: tuple[int, ...], classes: int) -> nn.Sequential:
    """Build the head for features of ``feature_shape`` (C,H,W or F, no batch), ending in Dense(classes)."""
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    shape = tuple(feature_shape)
    counts: dict[str, int] = {}

    def name(base: str) -> str:
        n = counts.get(base, 0)
        counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    for kind, args in parse_head(spec):
        if kind == "flatten":
            layers[name("flatten")] = nn.Flatten()
            shape = (int(torch.tensor(shape).prod()),)
        elif kind in ("avg", "max"):
            layers[name(f"global_{'average' if kind == 'avg' else 'max'}_pooling2d")] = GlobalPool(kind)
            shape = shape[:1]
        elif kind == "dense":
            _need_vector(shape, spec)
            layers[name("dense")] = Dense(shape[0], args[0], args[1])
            shape = (args[0],)
        elif kind == "dropout":
            layers[name("dropout")] = nn.Dropout(args[0])
        elif kind == "bn":
            _need_vector(shape, spec)
            layers[name("batch_normalization")] = nn.BatchNorm1d(shape[0])
        elif kind == "sqrt":
            layers[name("signed_sqrt")] = SignedSqrt()
    _need_vector(shape, spec)
    layers["predictions"] = Dense(shape[0], classes)
    return nn.Sequential(layers)


def _need_vector(shape: tuple[int, ...], spec: str) -> None:
    if len(shape) != 1:
        raise HeadstartError(
            f"Head {spec!r} applies a dense layer to a feature map of shape {shape}; expected a vector. Start the "
            f"head with 'flatten', 'avg' or 'max', or create the model with pooling='avg'.")
