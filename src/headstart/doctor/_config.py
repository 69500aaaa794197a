"""``DoctorConfig``: what `headstart doctor` accepts (its flags are generated from it). Imports nothing heavy."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..config import check_settings, parse_shape, parse_weights, setting

__all__ = ["DoctorConfig", "CSV_NAME", "CSV_COLUMNS"]

CSV_NAME = "doctor.csv"
CSV_COLUMNS = ("finding", "path", "split", "label", "suggested", "score", "group", "detail", "action")


@dataclass
class DoctorConfig:
    """What `headstart doctor` accepts. The model and split settings mean what they mean in `train`."""

    model: str = setting("lite0", "model whose features the checks use; see `headstart models`", short="-m",
                         group="model")
    weights: str | None = setting("imagenet", "'imagenet' (default), 'none' for random init, or a "
                                  ".pth/.safetensors path", parse=parse_weights, group="model")
    input_shape: tuple[int, int, int] | None = setting(
        None, "HEIGHT,WIDTH of the network input (default: the weights' size)", parse=parse_shape, metavar="H,W",
        group="model")
    val_split: float = setting(0.15, "as in train: the validation share carved out when DATA has no val/ folder",
                               minimum=0, below=1, group="splits")
    test_split: float = setting(0.15, "as in train: the test share carved out of a plain folder or CSV", minimum=0,
                                below=1, group="splits")
    seed: int = setting(0, "as in train: the seed of the splits and the folds", minimum=0, group="splits")
    cv_folds: int = setting(5, "folds of the out-of-fold probabilities behind the label checks", minimum=2,
                            maximum=20, group="checks")
    hash_bits: int = setting(6, "near duplicates: candidate pairs differ in at most this many of the 64 bits of "
                             "the perceptual hash", minimum=0, maximum=16, group="checks")
    cosine: float = setting(0.98, "near duplicates: embedding neighbours at least this similar are candidates "
                            "too", above=0, maximum=1, group="checks")
    similarity: float = setting(0.999, "near duplicates: a candidate is confirmed when the 16×16 colour thumbnails "
                                "correlate at least this much", above=0, maximum=1, group="checks")
    outlier_spread: float = setting(10.0, "outliers: robust standard deviations above the median distance to the "
                                    "nearest neighbours", above=0, group="checks")
    workers: int | None = setting(None, "processes that decode images (default: one per core)", minimum=0,
                                  group="execution")
    device: str | None = setting(None, "where the network runs: auto (default), cpu, cuda …", group="execution")

    def check(self) -> "DoctorConfig":
        check_settings(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d
