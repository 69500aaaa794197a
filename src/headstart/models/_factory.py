"""``create_model``: the one construction path (resolve spec → build timm model → load weights → add top)."""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Union

import timm
import torch
from torch import nn

from ..data import Preprocessing
from ..errors import HeadstartError, InputShapeError, WeightsError
from ..weights import WeightsSpec, read_state_dict, resolve_weights_file
from ._heads import GlobalPool, build_head
from ._model import HeadstartModel, ModelConfig
from ._registry import ModelSpec, get_spec

__all__ = ["create_model", "imagenet_labels", "default_input_size"]

WeightsArg = Union[str, os.PathLike, None]
POOLING_CHOICES = ("avg", "max")


def create_model(name: str, *, weights: WeightsArg = "imagenet", include_top: bool = True,
                 input_shape: tuple[int, ...] | None = None, pooling: str | None = None, classes: int = 1000,
                 head: str | None = None, cache_dir: str | os.PathLike | None = None,
                 download: bool = True) -> HeadstartModel:
    """Create a model by name with the Keras Applications switches.

    Args:
        name: ``vgg16``, ``vgg19``, ``resnet50``, ``inception_v3``, ``efficientnet_lite0/1/2`` (``lite0`` …), or
            any timm architecture name.
        weights: ``"imagenet"`` (pretrained), ``None`` (random init) or a path to a ``.pth``/``.safetensors`` file.
        include_top: keep the ImageNet classifier. With ``False`` the model returns features.
        input_shape: ``(height, width, 3)`` (Keras order), e.g. ``(300, 300, 3)`` or ``(480, 640, 3)``.
        pooling: with ``include_top=False``: ``None`` (feature map), ``"avg"`` or ``"max"`` (feature vector).
        classes: number of classes of the top (must be 1000 with ImageNet weights and ``include_top=True``).
        head: with ``include_top=False``, a new top such as ``"flatten,dense:1024:relu"``; a final
            ``Dense(classes)`` is appended (see :mod:`headstart.models._heads`).
        cache_dir: where downloaded weights go (default ``$HEADSTART_HOME/weights``).
        download: allow downloading weights that are not available locally.

    Example:
        >>> m = create_model("vgg16", weights=None, include_top=False, input_shape=(300, 300, 3),
        ...                  head="flatten,dense:1024:relu", classes=10)
        >>> m.summary(print_fn=None).total
        57193290
    """
    spec = get_spec(name)
    size = _check_args(spec, weights, include_top, input_shape, pooling, classes, head)
    preprocessing = _preprocessing(spec, weights)
    if size is not None:
        if include_top and head is None and spec.fixed_top_size and size != preprocessing.input_size:
            raise InputShapeError(
                f"{spec.name} with include_top=True takes input_shape {(*preprocessing.input_size, 3)} only: its "
                f"Flatten → fc1 top was built for that size. Received input_shape={input_shape}. Use "
                f"include_top=False (optionally with pooling or a head) for other sizes.")
        preprocessing = preprocessing.with_input_size(size)
    config = ModelConfig(name=spec.name, arch=spec.arch, weights=None if weights is None else str(weights),
                         include_top=include_top, input_shape=(*preprocessing.input_size, 3), pooling=pooling,
                         classes=classes, head=head)
    backbone = _build_backbone(spec, include_top, classes)
    if weights is not None:
        _load_weights(backbone, spec, weights, include_top, cache_dir, download)
    labels = None
    if include_top and head is None:
        labels = imagenet_labels() if classes == 1000 else [f"class_{i}" for i in range(classes)]
    elif head is not None:
        labels = [f"class_{i}" for i in range(classes)]
    model = HeadstartModel(backbone, spec, config, preprocessing, labels)
    if not include_top and pooling:
        model.pool = GlobalPool(pooling)
    model.eval()
    feature_shape = _dry_run(model, spec, input_shape)
    if head is not None:
        model.head = build_head(head, feature_shape, classes)
        model.head.eval()
    return model


def _check_args(spec: ModelSpec, weights, include_top, input_shape, pooling, classes, head):
    if pooling is not None and pooling not in POOLING_CHOICES:
        raise HeadstartError(f"pooling must be None, 'avg' or 'max'; received {pooling!r}.")
    if include_top and (pooling is not None or head is not None):
        raise HeadstartError(
            f"pooling={pooling!r} / head={head!r} replace the classifier top, so they need include_top=False; "
            f"received include_top=True. Pass include_top=False (CLI: --no-top).")
    if not isinstance(classes, int) or classes < 1:
        raise HeadstartError(f"classes must be a positive integer; received {classes!r}.")
    if weights == "imagenet" and include_top and classes != 1000:
        raise WeightsError(
            f"With weights='imagenet' and include_top=True, classes must be 1000 (the ImageNet classifier). "
            f"Received classes={classes}. For {classes} classes use include_top=False with a head, or weights=None.")
    if weights not in ("imagenet", None) and not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"weights must be 'imagenet', None or a file path; received {weights!r}.")
    if weights not in ("imagenet", None) and not Path(weights).is_file():
        raise WeightsError(
            f"weights={str(weights)!r} is neither 'imagenet', None, nor an existing file. Pass a path to a "
            f".pth/.safetensors file.")
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3) or not all(
            isinstance(v, int) and v > 0 for v in shape):
        raise InputShapeError(f"input_shape must be (height, width, 3) in Keras order, e.g. (300, 300, 3); "
                              f"received {input_shape!r}.")
    if min(shape[:2]) < spec.min_size:
        raise InputShapeError(
            f"input_shape {shape} is too small for {spec.name}: height and width must be at least "
            f"{spec.min_size} pixels. Received {shape[0]}×{shape[1]}.")
    return shape[:2]


def default_input_size(name: str, weights: WeightsArg = "imagenet") -> tuple[int, int]:
    """(height, width) the model takes with ``weights`` when no ``input_shape`` is given, without building it."""
    return tuple(_preprocessing(get_spec(name), weights).input_size)


def _preprocessing(spec: ModelSpec, weights: WeightsArg) -> Preprocessing:
    # The registered weights' preprocessing applies to every copy of them (package, cache, local path).
    if spec.weights is not None:
        return spec.weights.preprocessing
    return Preprocessing.from_timm_cfg(timm.get_pretrained_cfg(spec.arch).to_dict()
                                       if timm.get_pretrained_cfg(spec.arch) else {})


def _build_backbone(spec: ModelSpec, include_top: bool, classes: int) -> nn.Module:
    if include_top:
        return timm.create_model(spec.arch, pretrained=False, num_classes=classes)
    backbone = timm.create_model(spec.arch, pretrained=False, num_classes=0, global_pool="")
    for name in spec.top_modules:  # e.g. VGG's fc1/fc2, which forward_features does not use
        setattr(backbone, name, nn.Identity())
    return backbone


def _dry_run(model: HeadstartModel, spec: ModelSpec, input_shape) -> tuple[int, ...]:
    h, w = model.input_size
    try:
        with torch.no_grad():
            return tuple(model.forward_features(torch.zeros(1, 3, h, w)).shape[1:])
    except (RuntimeError, ValueError) as exc:
        raise InputShapeError(
            f"input_shape {(h, w, 3)} does not fit {spec.name}: the network failed on it "
            f"({str(exc).splitlines()[0]}). Use a larger input_shape (the default is "
            f"{_preprocessing(spec, 'imagenet').input_size}).") from None


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, short form (``Doberman``, ``espresso``) as Keras' decode_predictions."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


# -- weights ------------------------------------------------------------------------------------------------

def _load_weights(backbone: nn.Module, spec: ModelSpec, weights: WeightsArg, include_top: bool,
                  cache_dir, download: bool) -> None:
    if weights == "imagenet":
        if spec.weights is None:
            raise WeightsError(
                f"No ImageNet weights are registered for {spec.name!r} in headstart (it is a plain timm "
                f"architecture). Pass weights=PATH to a .pth/.safetensors file, weights=None for random init, or "
                f"use a registered model (`headstart models`).")
        path = resolve_weights_file(spec.weights, cache_dir=cache_dir, download=download,
                                    progress=sys.stderr.isatty())
    else:
        path = Path(weights)
    state = read_state_dict(path)
    state = adapt_state_dict(state, spec, backbone, source=str(path))
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing:
        raise WeightsError(f"{path} lacks {len(missing)} tensors that {spec.arch} needs, e.g. {missing[:3]}.")
    assert not unexpected, unexpected  # adapt_state_dict drops or reports them


def _reference(arch: str, num_classes: int) -> dict[str, torch.Size]:
    """Names and shapes of the full architecture (with its top), built on the meta device (no memory)."""
    with torch.device("meta"):
        ref = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    return {k: v.shape for k, v in ref.state_dict().items()}


def adapt_state_dict(state: dict[str, torch.Tensor], spec: ModelSpec, backbone: nn.Module,
                     source: str = "") -> dict[str, torch.Tensor]:
    """Rename the checkpoint's tensors to the timm architecture's and keep those the backbone has.

    Every name and shape is checked; tensors of the original top are dropped when the backbone has no top.
    """
    wspec: WeightsSpec | None = spec.weights
    target = backbone.state_dict()
    if wspec is not None:
        state = {k: v for k, v in state.items() if not k.startswith(wspec.drop_prefixes)}
    full = _reference(spec.arch, wspec.num_classes if wspec else 1000)
    if set(state) - set(full) and wspec is not None and wspec.remap == "positional":
        state = _positional(state, full, source)
    elif set(state) - set(full):
        state = _timm_filter(spec.arch, state, backbone)
    out = {}
    for key, tensor in state.items():
        if key not in target:
            if key in full:
                continue  # part of the original top, which this backbone does not have
            raise WeightsError(f"{source}: tensor {key!r} does not exist in {spec.arch}. Is this a checkpoint of "
                               f"another architecture? Expected names such as {list(target)[:3]}.")
        if tensor.shape != target[key].shape:
            raise WeightsError(
                f"{source}: tensor {key!r} has shape {tuple(tensor.shape)}, but {spec.arch} expects "
                f"{tuple(target[key].shape)}. If this is the classifier, the checkpoint has a different number "
                f"of classes: pass classes={tensor.shape[0]} or include_top=False.")
        out[key] = tensor
    return out


def _positional(state: dict[str, torch.Tensor], full: dict[str, torch.Size], source: str):
    """Map tensors in order (e.g. EfficientNet-PyTorch names → timm names), checking kind and shape of each."""
    if len(state) != len(full):
        raise WeightsError(f"{source}: {len(state)} tensors, but the architecture has {len(full)}.")
    out = {}
    for (src, tensor), (dst, shape) in zip(state.items(), full.items()):
        if src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1] or tensor.shape != shape:
            raise WeightsError(f"{source}: tensor {src!r} {tuple(tensor.shape)} does not correspond to {dst!r} "
                               f"{tuple(shape)}; this file is not the expected checkpoint.")
        out[dst] = tensor
    return out


def _timm_filter(arch: str, state: dict[str, torch.Tensor], backbone: nn.Module):
    """Apply the architecture module's own checkpoint converter (e.g. torchvision VGG → timm VGG)."""
    from timm.models._registry import _model_to_module

    module = sys.modules.get(f"timm.models.{_model_to_module.get(arch, '')}")
    fn = getattr(module, "checkpoint_filter_fn", None) or getattr(module, "_filter_fn", None)
    if fn is None:
        return state
    try:
        return fn(state, backbone)
    except TypeError:
        return fn(state)
