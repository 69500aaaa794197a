"""Views: the same image seen flipped or rotated, for training on more than one view and averaging at prediction.

A view set is applied to a *preprocessed* batch (N×3×H×W float32, what :meth:`Preprocessing.array_transform`
makes) in numpy, so the one function below serves every path that predicts: a run in this process (PyTorch), its
ONNX export (the views are applied before ONNX Runtime: the exported graph stays the plain one-view model), the
sklearn door and the feature cache that training reads. Nothing here imports torch.

- ``none``: the image as it is (what headstart did before views existed);
- ``hflip``: the image and its mirror image (photos: a mirrored cat is a cat);
- ``dihedral``: the 8 flips and quarter-turn rotations (orientation-free images: cells, micrographs, textures).

Training sees every view of every training image as a sample; prediction averages the class probabilities over
the views of each image. On ELPV, averaging views *without* training on them lost 9 points (77.3 % vs 86.9 %),
while training on them too gained 1.5 (88.4 %): the two always go together here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .errors import HeadstartError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["VIEW_SETS", "VIEWS_CHOICES", "view_ops", "apply_views", "average_views", "with_views", "ViewsFn",
           "ViewFeaturesFn", "check_views"]

# Each view: (quarter turns counter-clockwise, then mirror left-right). The identity comes first, so the first
# view of a cached set is the plain image (a smaller set is a prefix-free subset: see `view_index`).
_DIHEDRAL = ((0, False), (0, True), (1, False), (1, True), (2, False), (2, True), (3, False), (3, True))
VIEW_SETS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": _DIHEDRAL[:1],
    "hflip": _DIHEDRAL[:2],
    "dihedral": _DIHEDRAL,
}
VIEWS_CHOICES = ("auto", *VIEW_SETS)


def view_ops(views: str) -> tuple[tuple[int, bool], ...]:
    if views not in VIEW_SETS:
        raise HeadstartError(f"views must be one of {', '.join(VIEW_SETS)}; received {views!r}.")
    return VIEW_SETS[views]


def view_index(views: str, within: str = "dihedral") -> list[int]:
    """Positions of ``views``' views within the set ``within`` (to take a smaller set out of cached features)."""
    big = view_ops(within)
    try:
        return [big.index(op) for op in view_ops(views)]
    except ValueError:
        raise HeadstartError(f"views {views!r} are not a subset of {within!r}.") from None


def check_views(views: str, input_size: tuple[int, int]) -> None:
    """Quarter turns swap height and width: ``dihedral`` needs a square network input."""
    h, w = input_size
    if any(k % 2 for k, _ in view_ops(views)) and h != w:
        raise HeadstartError(f"views {views!r} rotate by 90°, which needs a square input; the network input is "
                             f"{h}×{w}. Use --views hflip (or none), or a square --input-shape.")


def apply_views(x: "np.ndarray", views: str) -> "np.ndarray":
    """N×3×H×W → (V·N)×3×H×W, view-major: rows ``v·N … v·N+N-1`` are view ``v`` of every image."""
    import numpy as np

    x = np.asarray(x)
    ops = view_ops(views)
    if len(ops) == 1:
        return x
    out = []
    for k, mirror in ops:
        y = np.rot90(x, k, axes=(2, 3)) if k else x
        out.append(y[..., ::-1] if mirror else y)
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def average_views(p: "np.ndarray", n_views: int) -> "np.ndarray":
    """(V·N)×K view-major outputs → N×K, the mean over the views of each image."""
    if n_views == 1:
        return p
    return p.reshape(n_views, -1, *p.shape[1:]).mean(0)


def _numpy(x) -> "np.ndarray":
    """A batch as numpy (the GPU engine hands tensors)."""
    import numpy as np

    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


class ViewsFn:
    """A backend function (batch → probabilities) that predicts on each view and averages per image.

    Forwards the backend's attributes (``runs_in_workers``, ``device``, …) so the runner places it like the
    function it wraps. Picklable when the wrapped function is (CPU workers receive it).
    """

    def __init__(self, fn: Callable, views: str):
        view_ops(views)
        self.fn, self.views = fn, views

    def __call__(self, x) -> "np.ndarray":
        import numpy as np

        x = _numpy(x)
        return average_views(np.asarray(self.fn(apply_views(x, self.views))), len(view_ops(self.views)))

    def __getattr__(self, name: str) -> Any:
        if name in ("fn", "views") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.fn, name)


class ViewFeaturesFn(ViewsFn):
    """A feature function run on each view: N×3×H×W → N×(V·D), the views of one image side by side."""

    def __call__(self, x) -> "np.ndarray":
        import numpy as np

        x = _numpy(x)
        n, v = len(x), len(view_ops(self.views))
        y = np.asarray(self.fn(apply_views(x, self.views))).reshape(v, n, -1)
        return np.ascontiguousarray(y.transpose(1, 0, 2).reshape(n, -1))


def with_views(fn: Callable, views: str | None) -> Callable:
    """``fn`` itself for no views (bit for bit what it computed before), else it wrapped in :class:`ViewsFn`."""
    if views in (None, "none"):
        return fn
    return ViewsFn(fn, views)
