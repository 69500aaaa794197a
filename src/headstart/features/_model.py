"""The network side of feature extraction: which layer, how it is pooled, and its output shape."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import HeadstartError, UnknownLayerError
from ..models import HeadstartModel, create_model, unknown_layer
from ._config import POOLING_MODES, ExtractConfig

if TYPE_CHECKING:
    from ..models import Layer

__all__ = ["POOLING_MODES", "FeatureModel", "pool_features", "feature_model_for"]
_VGG_TOP_LAYERS = ("flatten", "fc1", "fc2", "predictions")  # exist only with include_top=True


class _Stop(Exception):
    """Raised by the capture hook so that layers after the requested one are not computed."""


def pool_features(t: torch.Tensor, mode: str) -> torch.Tensor:
    if mode not in POOLING_MODES:
        raise HeadstartError(f"pooling must be one of {', '.join(POOLING_MODES)}; received {mode!r}.")
    if t.ndim == 4:  # N, C, H, W
        if mode == "none":
            return t.permute(0, 2, 3, 1)
        dims = (2, 3)
    elif t.ndim == 3:  # N, tokens, D (transformers)
        if mode == "none":
            return t
        dims = (1,)
    else:
        return t.flatten(1)
    if mode == "avg":
        return t.mean(dims)
    if mode == "max":
        return t.amax(dims)
    return torch.cat([t.mean(dims), t.amax(dims)], dim=1)


@dataclass
class _Target:
    model: HeadstartModel
    layer: "Layer | None"  # None: the model's final feature map


class FeatureModel:
    """Computes features of one layer for a batch of preprocessed images.

    ``layer=None`` means the pooled pre-classifier vector: for VGG the seed's ``fc2`` (4096 numbers), for other
    networks the final feature map pooled with ``pooling``.
    """

    def __init__(self, model: str = "lite0", *, layer: str | None = None, pooling: str = "avg",
                 weights: str | None = "imagenet", input_shape: tuple[int, int, int] | None = None,
                 cache_dir=None, capture: str = "output"):
        if pooling not in POOLING_MODES:
            raise HeadstartError(f"pooling must be one of {', '.join(POOLING_MODES)}; received {pooling!r}.")
        if capture not in ("output", "input"):
            raise HeadstartError(f"capture must be 'output' or 'input'; received {capture!r}.")
        self.name, self.pooling, self.capture = model, pooling, capture
        self._kw = dict(weights=weights, input_shape=input_shape, cache_dir=cache_dir)
        if layer is None and _is_vgg(model):
            layer = "fc2"
        self.layer_name = layer
        self._target = self._resolve(layer)
        self.model = self._target.model
        self.preprocessing = self.model.preprocessing
        self.model.eval()
        self.feature_shape = tuple(self(torch.zeros(1, 3, *self.model.input_size)).shape[1:])

    def _resolve(self, layer: str | None) -> _Target:
        if layer in _VGG_TOP_LAYERS and _is_vgg(self.name):  # skip building (and loading) VGG twice
            top = create_model(self.name, include_top=True, **self._kw)
            return _Target(top, top.resolve_layer(layer))
        base = create_model(self.name, include_top=False, **self._kw)
        if layer is None:
            return _Target(base, None)
        try:
            return _Target(base, base.resolve_layer(layer))
        except UnknownLayerError as first:
            # Layers of the classifier top (VGG's flatten/fc1/fc2/predictions) exist only with include_top=True.
            try:
                top = create_model(self.name, include_top=True, **self._kw)
            except HeadstartError:
                raise first from None
            try:
                return _Target(top, top.resolve_layer(layer))
            except UnknownLayerError:  # name every layer --layer accepts, the top's included
                raise unknown_layer(base.config.name, layer, top.layer_names()) from None

    def layer_table(self) -> list[tuple[str, tuple]]:
        """(name, Keras-order output shape) of every layer of the model with its top: what --layer accepts."""
        try:
            full = create_model(self.name, include_top=True, **self._kw)
        except HeadstartError:
            full = self.model
        shapes = full.output_shapes()
        return [(layer.name, shapes.get(layer.name, ())) for layer in full.layers()]

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.compute(x)

    def as_module(self) -> torch.nn.Module:
        """This feature computation as an ``nn.Module`` (what backends export and run)."""
        return _FeatureModule(self)

    def compute(self, x: torch.Tensor) -> torch.Tensor:
        """The features of a preprocessed batch (no grad-mode decision: callers choose)."""
        target = self._target
        if target.layer is None:
            return pool_features(target.model.forward_features(x), self.pooling)
        layer = target.layer
        captured: list[torch.Tensor] = []

        def hook(module, args, out=None):
            captured.append(args[0] if layer.flatten_input or self.capture == "input" else out)
            raise _Stop

        if self.capture == "input":  # what enters the layer: the cut point of partial fine-tuning
            module = target.model.get_submodule(layer.param_modules[0] if layer.param_modules else layer.output_module)
            handle = module.register_forward_pre_hook(hook)
        else:
            handle = target.model.get_submodule(layer.output_module).register_forward_hook(hook)
        try:
            target.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise HeadstartError(f"Layer {layer.name!r} was not run by the forward pass of {self.name}; "
                                 f"choose another (`headstart extract --layer list --model {self.name}`).")
        out = captured[0]
        if self.capture == "output" and (layer.flatten_input or layer.flatten_output):
            out = out.flatten(1)
        return pool_features(out, self.pooling)

    def to(self, device: torch.device | str, channels_last: bool = False) -> "FeatureModel":
        self.model.to(device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        return self


class _FeatureModule(torch.nn.Module):
    """Wraps a FeatureModel so that export and hashing see the network and the layer/pooling/capture choice."""

    def __init__(self, fm: FeatureModel):
        super().__init__()
        self.net = fm.model
        self._fm = fm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fm.compute(x)

    def extra_repr(self) -> str:
        return f"layer={self._fm.layer_name!r}, pooling={self._fm.pooling!r}, capture={self._fm.capture!r}"


def feature_model_for(config: ExtractConfig) -> FeatureModel:
    # Random-init models are seeded so that a resumed extraction computes exactly what the first run did.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return FeatureModel(config.model, layer=config.layer, pooling=config.pooling, weights=config.weights,
                            input_shape=config.input_shape, capture=config.capture)


def _is_vgg(name: str) -> bool:
    from ..models import get_spec

    return get_spec(name).keras_names == "vgg"
