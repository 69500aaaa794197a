"""HeadstartModel: a timm backbone with Keras' switches, its preprocessing, named layers and a summary."""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..data import ImageInput, Preprocessing, load_image
from ..errors import HeadstartError, UnknownLayerError
from ._layers import Layer, model_layers
from ._prediction import Prediction
from ._registry import ModelSpec

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ModelConfig", "HeadstartModel", "Prediction", "LayerHandle", "FromCut", "Probabilities", "unknown_layer"]


@dataclass(frozen=True)
class ModelConfig:
    """The arguments a model was created with; enough to rebuild it (saved next to every trained model)."""

    name: str
    arch: str
    weights: str | None = "imagenet"
    include_top: bool = True
    input_shape: tuple[int, int, int] | None = None  # (height, width, channels), Keras order
    pooling: str | None = None
    classes: int = 1000
    head: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LayerHandle:
    """What ``model.get_layer(name)`` returns; ``.trainable = False`` freezes it, as in Keras."""

    def __init__(self, model: "HeadstartModel", layer: Layer):
        self._model, self.layer = model, layer
        self.name = layer.name

    def parameters(self) -> Iterable[nn.Parameter]:
        for path in self.layer.param_modules:
            yield from self._model.get_submodule(path).parameters()

    @property
    def trainable(self) -> bool:
        return all(p.requires_grad for p in self.parameters())

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for p in self.parameters():
            p.requires_grad_(bool(value))

    @property
    def output_shape(self) -> tuple:
        return self._model.output_shapes()[self.name]

    def __repr__(self) -> str:
        return f"<Layer {self.name} ({self.layer.type}) trainable={self.trainable}>"


class HeadstartModel(nn.Module):
    """A pretrained (or random) timm network with the Keras Applications switches applied.

    ``forward`` returns logits when the model has a classification top (ImageNet's or a new head), otherwise
    the feature map (``pooling=None``) or vector (``pooling='avg'|'max'``). Build it with
    :func:`headstart.create_model`.
    """

    def __init__(self, backbone: nn.Module, spec: ModelSpec, config: ModelConfig, preprocessing: Preprocessing,
                 class_names: Sequence[str] | None = None):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.config = config
        self.preprocessing = preprocessing
        self.pool: nn.Module | None = None
        self.head: nn.Sequential | None = None
        self.class_names = list(class_names) if class_names is not None else None
        self.freeze_bn_stats = False  # True: every BatchNorm uses its stored statistics, even in train mode
        self._shapes: dict[str, tuple] | None = None

    # -- forward ---------------------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features before any top: the unpooled map, pooled if ``pooling`` was given."""
        x = self.backbone.forward_features(x)
        return self.pool(x) if self.pool is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.include_top and self.head is None:
            return self.backbone(x)
        x = self.forward_features(x)
        return self.head(x) if self.head is not None else x

    @property
    def has_classifier(self) -> bool:
        return self.class_names is not None

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocessing.input_size

    # -- layers ----------------------------------------------------------------------------------------------
    def layers(self) -> list[Layer]:
        return model_layers(self)

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers()]

    def resolve_layer(self, name: str) -> Layer:
        """A named layer (Keras name for VGG, timm module name otherwise) or any module path of the backbone."""
        for layer in self.layers():
            if layer.name == name:
                return layer
        for prefix in ("backbone.", ""):
            path = prefix + name
            try:
                module = self.get_submodule(path)
            except AttributeError:
                continue
            if path:
                return Layer(name, type(module).__name__, (path,), path)
        raise unknown_layer(self.config.name, name, self.layer_names())

    def get_layer(self, name: str) -> LayerHandle:
        return LayerHandle(self, self.resolve_layer(name))

    def train(self, mode: bool = True) -> "HeadstartModel":
        """Like ``nn.Module.train``, but BatchNorm layers whose parameters are all frozen stay in eval mode.

        A frozen layer must not change: in train mode BatchNorm would keep updating its running statistics
        even with ``requires_grad=False`` (the most reported fine-tuning bug in Keras, Lightning and fastai).
        """
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    params = list(m.parameters())
                    if self.freeze_bn_stats or (params and not any(p.requires_grad for p in params)):
                        m.eval()
        return self

    # -- shapes and summary ----------------------------------------------------------------------------------
    @torch.no_grad()
    def dry_run(self, hooks: Sequence = ()) -> None:
        """One zero image through the model in eval mode, for what forward ``hooks`` record; the hooks are
        removed and the train/eval mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            self(torch.zeros(1, 3, *self.input_size))
        finally:
            for hk in hooks:
                hk.remove()
            self.train(was_training)

    def output_shapes(self) -> dict[str, tuple]:
        """Per-layer output shapes (Keras order: (None, H, W, C) or (None, N)) from one dry run."""
        if self._shapes is None:
            self._shapes = _trace_shapes(self, self.layers())
        return self._shapes

    def summary(self, print_fn: Callable[[str], None] | None = print):
        """Print and return a Keras-style table of layers, output shapes and parameter counts."""
        from ._summary import summarize

        table = summarize(self)
        if print_fn is not None:
            print_fn(str(table))
        return table

    # -- classification --------------------------------------------------------------------------------------
    def require_classifier(self) -> None:
        """Raise, with the fix, if this model has no classes to predict."""
        if not self.has_classifier:
            raise HeadstartError(
                f"Model {self.config.name!r} was created with include_top=False and no head, so it has no classes "
                f"to predict. Use include_top=True (ImageNet labels) or a trained model (headstart.load).")

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Images (paths, PIL images or arrays) → a normalized batch tensor for this model."""
        transform = self.preprocessing.transform()
        return torch.stack([transform(load_image(im)) for im in images])

    @torch.inference_mode()
    def classify(self, images: ImageInput | Sequence[ImageInput], top: int = 5,
                 batch_size: int = 16) -> list[list[Prediction]]:
        """Top-``top`` labels with probabilities for each image (the seed's first usage pattern)."""
        self.require_classifier()
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            images = [images]
        was_training = self.training
        self.eval()
        results: list[list[Prediction]] = []
        for i in range(0, len(images), batch_size):
            probs = self(self.preprocess(images[i:i + batch_size])).float().softmax(-1)
            values, indices = probs.topk(min(top, probs.shape[-1]), dim=-1)
            for vals, idxs in zip(values.tolist(), indices.tolist()):
                results.append([Prediction(self.class_names[j], j, v) for v, j in zip(vals, idxs)])
        self.train(was_training)
        return results

    def explain(self, images: ImageInput | Sequence[ImageInput], target: Any = None, layer: str | None = None,
                method: str = "gradcam") -> "np.ndarray":
        """Grad-CAM maps, one (H, W) array in [0, 1] per image at the model's input size: shape (N, H, W).

        ``target``: None (each image's top prediction), a class name or index, or one per image. ``layer``: a
        name as in ``extract --layer``; default the last convolutional feature map. Needs captum
        (``pip install 'headstart[explain]'``); :func:`headstart.explain.explain` also returns labels and
        probabilities. Raises ``ImageLoadError`` for an unreadable image.
        """
        import numpy as np

        from ..errors import ImageLoadError
        from ..explain import explain

        result = explain(self, images, target=target, layer=layer, method=method)
        for e in result:
            if not e.ok:
                raise ImageLoadError(e.path, e.error)
        return np.stack([e.map for e in result])


class Probabilities(nn.Module):
    """Softmax of a model's logits: what the backends export and run for classify / predict / evaluate."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float().softmax(-1)


class FromCut(nn.Module):
    """Runs a model from activations at module ``cut`` (the cached input of that module): a tiny dummy image
    passes through the frozen prefix and the cut module's input is replaced by the given batch (valid for cuts
    between sequential stages). What the ``partial`` strategy trains on cached activations."""

    def __init__(self, model: HeadstartModel, cut: str):
        super().__init__()
        self.model, self.cut = model, cut
        self.register_buffer("dummy", torch.zeros(1, 3, model.spec.min_size, model.spec.min_size), persistent=False)

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        handle = self.model.get_submodule(self.cut).register_forward_pre_hook(lambda m, args: (acts,))
        try:
            return self.model(self.dummy)
        finally:
            handle.remove()


def unknown_layer(model: str, name: str, names: Sequence[str]) -> UnknownLayerError:
    """The error for a layer name that does not exist: the closest names, then every valid one."""
    close = difflib.get_close_matches(name, list(names), n=5, cutoff=0.5)
    return UnknownLayerError(
        f"Model {model!r} has no layer {name!r}." + (f" Did you mean: {', '.join(close)}?" if close else "")
        + f" Valid layers ({len(names)}): {', '.join(names)}. Any module path such as a stage name also works; "
        f"`headstart extract --model {model} --layer list` shows them with output shapes.")


def keras_shape(shape: Sequence[int]) -> tuple:
    """(N, C, H, W) → (None, H, W, C); (N, F) → (None, F)."""
    shape = tuple(shape)
    if len(shape) == 4:
        return (None, shape[2], shape[3], shape[1])
    return (None, *shape[1:])


@torch.no_grad()
def _trace_shapes(model: HeadstartModel, layers: list[Layer]) -> dict[str, tuple]:
    """Run one zero image through the model and record each layer's output shape."""
    shapes: dict[str, tuple] = {}
    hooks = []
    for layer in layers:
        module = model.get_submodule(layer.output_module)

        def hook(mod, args, out, layer=layer):
            if layer.name in shapes:
                return
            t = args[0] if layer.flatten_input else out
            if isinstance(t, torch.Tensor):
                flat = layer.flatten_input or layer.flatten_output
                shapes[layer.name] = (None, int(t[0].numel())) if flat else keras_shape(t.shape)

        hooks.append(module.register_forward_hook(hook))
    model.dry_run(hooks)
    return shapes
