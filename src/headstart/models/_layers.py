"""Named layers of a headstart model: Keras names for VGG, timm module names for everything else.

A :class:`Layer` is what a user addresses by name in ``summary``, ``extract --layer``, freezing and
``--unfreeze-from``: the modules that own its parameters, and the module whose output is the layer's output.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["Layer", "model_layers"]

_KERAS_TYPES = {"Conv2d": "Conv2D", "MaxPool2d": "MaxPooling2D", "Linear": "Dense", "Flatten": "Flatten",
                "Dropout": "Dropout", "BatchNorm1d": "BatchNormalization", "BatchNorm2d": "BatchNormalization",
                "GlobalPool": "GlobalPooling2D"}


@dataclass(frozen=True)
class Layer:
    name: str
    type: str
    param_modules: tuple[str, ...]  # module paths (relative to the HeadstartModel) owning this layer's params
    output_module: str  # module whose output is this layer's output
    flatten_input: bool = False  # a virtual Flatten: the output is the flattened *input* of output_module
    flatten_output: bool = False  # timm's 1×1-map "Dense" (VGG fc1/fc2 are convs): the output is flattened


def model_layers(model: nn.Module) -> list[Layer]:
    """Layers of a HeadstartModel in forward order: backbone, pooling, head."""
    spec = model.spec
    layers: list[Layer] = []
    if spec.keras_names == "vgg":
        layers += _vgg_layers(model)
    else:
        layers += _leaf_layers(model.backbone, "backbone")
    if model.pool is not None:
        kind = "global_average_pooling2d" if model.pool.mode == "avg" else "global_max_pooling2d"
        layers.append(Layer(kind, "GlobalPooling2D", ("pool",), "pool"))
    if model.head is not None:
        for child_name, child in model.head.named_children():
            path = f"head.{child_name}"
            layers.append(Layer(child_name, _type_name(child), (path,), path))
    return layers


def _type_name(module: nn.Module) -> str:
    name = type(module).__name__
    return _KERAS_TYPES.get(name, name)


def _leaf_layers(root: nn.Module, prefix: str) -> list[Layer]:
    """Modules that own parameters or buffers (e.g. timm's BatchNormAct2d, with its act inside) or have no
    children: one row each, without descending into them."""
    out: list[Layer] = []

    def visit(module: nn.Module, path: str) -> None:
        children = list(module.named_children())
        own = any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))
        if path and (own or not children):
            out.append(Layer(path, type(module).__name__, (f"{prefix}.{path}",), f"{prefix}.{path}"))
            return
        for name, child in children:
            visit(child, f"{path}.{name}" if path else name)

    visit(root, "")
    return out


def _vgg_layers(model: nn.Module) -> list[Layer]:
    """block1_conv1 … block5_pool from timm's ``features`` Sequential, then flatten/fc1/fc2/predictions."""
    out: list[Layer] = []
    block, conv = 1, 1
    feats = list(model.backbone.features.named_children())
    for i, (idx, module) in enumerate(feats):
        path = f"backbone.features.{idx}"
        if isinstance(module, nn.Conv2d):
            # Keras' Conv2D includes its ReLU: the layer's output is the activation that follows.
            nxt = feats[i + 1] if i + 1 < len(feats) and isinstance(feats[i + 1][1], nn.ReLU) else (idx, None)
            out.append(Layer(f"block{block}_conv{conv}", "Conv2D", (path,), f"backbone.features.{nxt[0]}"))
            conv += 1
        elif isinstance(module, nn.MaxPool2d):
            out.append(Layer(f"block{block}_pool", "MaxPooling2D", (), path))
            block, conv = block + 1, 1
    if model.config.include_top and model.head is None:
        pl = "backbone.pre_logits"
        out += [Layer("flatten", "Flatten", (), f"{pl}.fc1", flatten_input=True),
                Layer("fc1", "Dense", (f"{pl}.fc1",), f"{pl}.act1", flatten_output=True),
                Layer("fc2", "Dense", (f"{pl}.fc2",), f"{pl}.act2", flatten_output=True),
                Layer("predictions", "Dense", ("backbone.head",), "backbone.head")]
    return out


def stage_paths(model: nn.Module) -> list[str]:
    """Module paths of the backbone's stages in forward order (the units of partial fine-tuning).

    EfficientNet/MobileNet ``blocks.i``, ResNet ``layer1..4``, ConvNeXt-style ``stages.i``, VGG's Keras blocks
    (first conv of each block); otherwise the backbone's top-level children that hold parameters.
    """
    bb = model.backbone
    if isinstance(getattr(bb, "blocks", None), nn.Sequential):
        return [f"backbone.blocks.{i}" for i in range(len(bb.blocks))]
    if all(hasattr(bb, f"layer{i}") for i in range(1, 5)):
        return [f"backbone.layer{i}" for i in range(1, 5)]
    if isinstance(getattr(bb, "stages", None), nn.Sequential):
        return [f"backbone.stages.{i}" for i in range(len(bb.stages))]
    if model.spec.keras_names == "vgg":
        return [layer.param_modules[0] for layer in model.layers() if layer.name.endswith("_conv1")]
    return [f"backbone.{n}" for n, m in bb.named_children() if any(True for _ in m.parameters())]
