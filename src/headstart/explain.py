"""Grad-CAM: which parts of an image made a model predict a class.

The attribution is captum's ``LayerGradCam`` (maintained by the PyTorch team, tested against the paper); this
module only decides *where* to look (the last convolutional feature map of whatever network is loaded, or a
layer named as in ``extract --layer``), *what* to explain (top-k predictions or a named class) and draws the
overlays. ``pip install 'headstart[explain]'`` installs captum.

>>> import headstart
>>> model = headstart.create_model("lite0")
>>> maps = model.explain(["photo.jpg"])                # doctest: +SKIP
>>> maps.shape                                         # doctest: +SKIP
(1, 224, 224)
"""
from __future__ import annotations

import difflib
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from .data import ImageInput, load_image
from .errors import ExplainError, ImageLoadError, NoFeatureMapError

__all__ = ["Explanation", "ExplainError", "NoFeatureMapError", "explain", "gradcam", "default_layer",
           "resolve_target_layer", "overlay", "save_overlays", "map_peak", "METHODS"]

_logger = logging.getLogger(__name__)
METHODS = ("gradcam",)  # captum gives Grad-CAM for any layer; Grad-CAM++/Score-CAM would need another library
# A feature map this early (followed by this share of the parameters in non-convolutional layers, e.g. a
# transformer's blocks) says nothing about what the classifier used: refuse it instead of drawing noise.
MAX_PARAMS_AFTER_MAP = 0.25
OVERLAY_ALPHA = 0.45
PEAK_THRESHOLD = 0.5  # the hot region around a map's maximum: where the map is at least half as strong


@dataclass
class Explanation:
    """One Grad-CAM map for one image and one class."""

    path: str | None  # the file, or None for an in-memory image
    map: np.ndarray | None  # (H, W) float32 in [0, 1] at the model's input size; None on error
    image: np.ndarray | None  # (H, W, 3) uint8: the image as the model saw it (resized, centre-cropped)
    label: str | None = None  # the explained class
    index: int | None = None
    probability: float | None = None  # the model's probability for the explained class
    predicted: str | None = None  # the top-1 class and its probability
    predicted_probability: float | None = None
    layer: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def peak(self) -> tuple[float, float] | None:
        """Where the map points: (x, y) in the model's input pixels; None on error or for an all-zero map.

        The map-weighted centre of the hot region (≥ half the maximum) that contains the maximum, as CAM's
        localization does (Zhou et al. 2016). Not the argmax: a 7×7 map upsampled to 224 px has its maximum on one
        of 49 cell centres, so a region straddling two cells reads a cell off; its centre is found to sub-cell
        precision. Another hot region elsewhere does not pull the point between the two.
        """
        return None if self.map is None else map_peak(self.map)


def map_peak(cam: np.ndarray, threshold: float = PEAK_THRESHOLD) -> tuple[float, float] | None:
    """(x, y): the weighted centre of the connected region ``cam ≥ threshold × max`` holding the maximum; None for
    a map with no evidence anywhere (all zero: nothing spoke for the class)."""
    from scipy import ndimage  # scikit-learn's dependency: always installed with headstart

    if not cam.max() > 0:
        return None
    regions, _ = ndimage.label(cam >= threshold * cam.max())
    y, x = np.unravel_index(int(cam.argmax()), cam.shape)
    cy, cx = ndimage.center_of_mass(np.where(regions == regions[y, x], cam, 0.0))
    return float(cx), float(cy)


# -- which layer ---------------------------------------------------------------------------------------------
@dataclass
class _Record:
    path: str
    start: int
    end: int
    shape: tuple[int, ...]
    own_params: int


@torch.no_grad()
def _trace(model: nn.Module) -> list[_Record]:
    """Run one zero image and record, per module, when it started and ended and the shape of its output."""
    starts: dict[str, int] = {}
    seen: set[str] = set()  # a module called twice (shared blocks) is recorded at its first call
    records: list[_Record] = []
    counter = [0]
    hooks = []
    for path, module in model.named_modules():
        if not path:
            continue

        def pre(mod, args, path=path):
            counter[0] += 1
            starts.setdefault(path, counter[0])

        def post(mod, args, out, path=path):
            counter[0] += 1
            if isinstance(out, torch.Tensor) and path not in seen:
                seen.add(path)
                own = sum(p.numel() for p in mod.parameters(recurse=False))
                records.append(_Record(path, starts[path], counter[0], tuple(out.shape), own))

        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    model.dry_run(hooks)
    return records


def _is_map(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] * shape[3] > 1


def default_layer(model: nn.Module) -> str:
    """Module path of the last convolutional feature map, after its BatchNorm/activation if it has one.

    Works from what the network does, not from its class: for EfficientNet it finds ``bn2`` (after
    ``conv_head``), for ResNet ``layer4``, for VGG the feature stack's output (``block5_pool``).
    """
    records = _trace(model)
    convs = {path for path, m in model.named_modules() if any(isinstance(s, nn.Conv2d) for s in m.modules())}
    maps = [r for r in records if r.path in convs and _is_map(r.shape)]
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    if not maps:
        raise NoFeatureMapError(
            f"Model {name!r} has no convolutional layer with a spatial output, so Grad-CAM has no feature map to "
            f"explain. Expected a CNN (VGG, ResNet, Inception, EfficientNet, ConvNeXt, …); received one without "
            f"Conv2d feature maps. Use a convolutional model, or pass --layer with a layer whose output is N×C×H×W.")
    chosen = max(maps, key=lambda r: r.end)
    for r in sorted((r for r in records if r.end > chosen.end), key=lambda r: r.end):
        if r.shape != chosen.shape:  # e.g. global pooling: the feature map ends here
            break
        chosen = r  # BatchNorm, activation or dropout right after the last conv: same map, post-activation
    # Parameters that act on the map later without collapsing it (pooled vectors and the classifier don't count).
    after = sum(r.own_params for r in records if r.start > chosen.end and (_is_map(r.shape) or len(r.shape) == 3))
    total = sum(p.numel() for p in model.parameters()) or 1
    if after / total > MAX_PARAMS_AFTER_MAP:
        raise NoFeatureMapError(
            f"Model {name!r} is not convolutional near its output: its last convolutional feature map "
            f"({chosen.path}, {chosen.shape}) is followed by {after / total:.0%} of its parameters in other layers "
            f"(e.g. transformer blocks), so a Grad-CAM there would not show what the classifier used. Expected a "
            f"CNN; use one (e.g. lite0, resnet50, vgg16), or pass --layer NAME to explain that layer anyway.")
    return chosen.path


def resolve_target_layer(model: nn.Module, layer: str | None) -> str:
    """The module path to explain: ``layer`` as named by ``extract --layer`` (or a module path), else the default."""
    if layer is None:
        return default_layer(model)
    resolved = model.resolve_layer(layer)
    if resolved.flatten_input or resolved.flatten_output:
        raise ExplainError(f"Layer {layer!r} is a flattened vector, not a feature map; Grad-CAM needs a layer "
                           f"whose output is N×C×H×W (e.g. a convolution or pooling layer; see "
                           f"`headstart extract --model {model.config.name} --layer list`).")
    shape = next((r.shape for r in _trace(model) if r.path == resolved.output_module), None)
    if shape is None or not _is_map(shape):
        raise ExplainError(f"Layer {layer!r} outputs shape {shape}; Grad-CAM needs a feature map N×C×H×W with "
                           f"H×W > 1. Choose an earlier convolutional layer, or leave --layer out for the default "
                           f"({_default_or_none(model)}).")
    return resolved.output_module


def _default_or_none(model: nn.Module) -> str:
    try:
        return default_layer(model)
    except NoFeatureMapError:
        return "none: this model has no usable feature map"


# -- which class ---------------------------------------------------------------------------------------------
def _class_index(target: int | str, names: Sequence[str]) -> int:
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= int(target) < len(names):
            raise ExplainError(f"Class index must be between 0 and {len(names) - 1}; received {target}.")
        return int(target)
    lowered = [n.lower() for n in names]
    if str(target).lower() in lowered:
        return lowered.index(str(target).lower())
    close = difflib.get_close_matches(str(target), names, n=5, cutoff=0.5)
    raise ExplainError(f"The model has no class {target!r}." + (f" Did you mean: {', '.join(close)}?" if close else
                       f" Its classes are: {', '.join(names[:10])}{' …' if len(names) > 10 else ''}."))


def _targets(target: Any, n: int, names: Sequence[str]) -> list[list[int] | None]:
    """Per image: explicit class indices, or None (= the top-k predictions)."""
    if target is None:
        return [None] * n
    if isinstance(target, (str, int, np.integer)):
        return [[_class_index(target, names)]] * n
    target = list(target)
    if len(target) != n:
        raise ExplainError(f"target must be one class, or one per image ({n}); received {len(target)} values.")
    return [None if t is None else [_class_index(t, names)] for t in target]


# -- the maps ------------------------------------------------------------------------------------------------
def gradcam(model: nn.Module, batch: torch.Tensor, targets: Sequence[int], layer: str) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for a preprocessed batch and one class index per image."""
    try:
        from captum.attr import LayerGradCam
    except ImportError:
        raise ExplainError("Grad-CAM needs the captum package, which is not installed. Install it with "
                           "`pip install 'headstart[explain]'` (or `pip install captum`).") from None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = batch.detach().clone().requires_grad_(True)
            attr = LayerGradCam(model, model.get_submodule(layer)).attribute(
                x, target=[int(t) for t in targets], relu_attributions=True)
    finally:
        model.train(was_training)
    attr = torch.nn.functional.interpolate(attr.detach().float(), size=batch.shape[-2:], mode="bilinear",
                                           align_corners=False)[:, 0]
    peak = attr.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (attr / peak).clamp(0, 1).numpy().astype(np.float32)


def _view(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the normalization: the (H, W, 3) uint8 image the network saw."""
    t = tensor * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def explain(model: nn.Module, images: ImageInput | Sequence[ImageInput], *, target: Any = None, top: int = 1,
            layer: str | None = None, method: str = "gradcam", batch_size: int = 8) -> list[Explanation]:
    """Grad-CAM explanations: one per image and class (the ``top`` predicted classes, or ``target``).

    Args:
        model: a classifier (``headstart.create_model(...)`` with its top, or ``headstart.load(RUN).model``).
        images: paths, PIL images or arrays. An unreadable file gives an Explanation with ``.error``.
        target: None (the top predictions), a class name or index for every image, or one per image.
        top: how many predicted classes to explain per image when ``target`` is None.
        layer: a layer name as in ``extract --layer`` (or a module path); default: the last conv feature map.
    """
    if method not in METHODS:
        raise ExplainError(f"method must be one of {', '.join(METHODS)}; received {method!r}.")
    model.require_classifier()
    if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Sequence):
        images = [images]
    names = list(model.class_names)
    per_image = _targets(target, len(images), names)
    path = resolve_target_layer(model, layer)
    _logger.info("Grad-CAM on layer %s of %s", path, model.config.name)
    out: list[Explanation] = []
    for i in range(0, len(images), batch_size):
        out += _explain_batch(model, images[i:i + batch_size], per_image[i:i + batch_size], top, path)
    return out


def _explain_batch(model, images, targets, top: int, layer: str) -> list[Explanation]:
    pre = model.preprocessing
    transform = pre.transform()
    tensors: list[torch.Tensor | None] = []
    errors: list[str | None] = []
    for im in images:
        try:
            tensors.append(transform(load_image(im)))
            errors.append(None)
        except ImageLoadError as exc:
            _logger.info("%s", exc)  # reported to the caller in Explanation.error
            tensors.append(None)
            errors.append(exc.cause)
    good = [i for i, t in enumerate(tensors) if t is not None]
    rows: dict[int, list[Explanation]] = {}
    if good:
        batch = torch.stack([tensors[i] for i in good])
        model.eval()
        with torch.no_grad():
            probs = model(batch).float().softmax(-1)
        jobs = []  # (row in batch, class index)
        for row, i in enumerate(good):
            classes = targets[i] or probs[row].topk(min(top, probs.shape[-1])).indices.tolist()
            jobs += [(row, c) for c in classes]
        maps = gradcam(model, batch[[r for r, _ in jobs]], [c for _, c in jobs], layer)
        for (row, c), cam in zip(jobs, maps):
            i = good[row]
            p_top, i_top = probs[row].max(0)
            rows.setdefault(i, []).append(Explanation(
                _name(images[i]), cam, _view(batch[row], pre.mean, pre.std), model.class_names[c], c,
                float(probs[row, c]), model.class_names[int(i_top)], float(p_top), layer))
    return [e for i, im in enumerate(images)
            for e in rows.get(i, [Explanation(_name(im), None, None, layer=layer, error=errors[i])])]


def _name(image: ImageInput) -> str | None:
    return os.fsdecode(image) if isinstance(image, (str, bytes, os.PathLike)) else None


# -- pictures ------------------------------------------------------------------------------------------------
def heatmap_rgb(cam: np.ndarray) -> np.ndarray:
    """A [0, 1] map as a (H, W, 3) uint8 'jet' picture (blue: no evidence, red: strongest evidence)."""
    from matplotlib import colormaps

    return (colormaps["jet"](cam)[..., :3] * 255).astype(np.uint8)


def blend(expl: Explanation, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The image with its heat map laid over it, at the model's input size."""
    mixed = (1 - alpha) * expl.image.astype(np.float32) + alpha * heatmap_rgb(expl.map).astype(np.float32)
    return Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8))


def overlay(expl: Explanation, min_side: int = 256) -> Image.Image:
    """Image | image with heat map, above a caption naming the explained class, its probability and the layer."""
    if not expl.ok:
        raise ExplainError(f"{expl.path}: no explanation to draw ({expl.error}).")
    base, mixed = Image.fromarray(expl.image), blend(expl)
    scale = max(1.0, min_side / min(base.size))
    size = (round(base.width * scale), round(base.height * scale))
    base, mixed = base.resize(size, Image.BICUBIC), mixed.resize(size, Image.BICUBIC)
    font = ImageFont.load_default(size=max(12, size[1] // 16))
    line = font.size + 6
    canvas = Image.new("RGB", (2 * size[0] + 8, size[1] + 2 * line + 8), "white")
    canvas.paste(base, (0, 0))
    canvas.paste(mixed, (size[0] + 8, 0))
    draw = ImageDraw.Draw(canvas)
    peak = expl.peak
    if peak is not None:  # a ring where the map points
        cx, cy, r = size[0] + 8 + peak[0] * scale, peak[1] * scale, max(4, size[1] // 40)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline="white", width=max(2, r // 2))
    draw.text((4, size[1] + 4), f"Grad-CAM for {expl.label}: {expl.probability:.1%}", fill="black", font=font)
    small = ImageFont.load_default(size=max(10, int(font.size * 0.75)))
    draw.text((4, size[1] + 4 + line), f"predicted {expl.predicted} ({expl.predicted_probability:.1%}) · layer "
              f"{expl.layer}", fill=(70, 70, 70), font=small)
    return canvas


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "class"


def save_overlays(explanations: Sequence[Explanation], out_dir: str | os.PathLike) -> list[Path]:
    """Write one PNG per successful explanation into ``out_dir``: ``<image stem>.<class>.png``."""
    from .atomic import atomic_write_bytes

    out = Path(out_dir)
    if any(e.ok for e in explanations):  # nothing to write: leave no empty folder behind
        out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for n, e in enumerate(explanations):
        if not e.ok:
            continue
        stem = _safe(Path(e.path).stem) if e.path else f"image{n}"
        dest = out / f"{stem}.{_safe(e.label)}.png"
        if dest in written:  # two inputs with the same file name in different folders
            dest = out / f"{stem}-{n}.{_safe(e.label)}.png"
        buf = io.BytesIO()
        overlay(e).save(buf, format="PNG")
        atomic_write_bytes(dest, buf.getvalue())
        written.append(dest)
    return written
