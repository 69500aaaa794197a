"""One predicted class with its probability (kept free of torch: ONNX-only prediction builds these too)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Prediction"]


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float

    def __str__(self) -> str:
        return f"{self.label} ({self.probability * 100:.1f}%)"
