"""Keras-style ``model.summary()``: layer (type), output shape, parameter count, and the three totals."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Summary", "summarize"]


@dataclass
class Summary:
    name: str
    rows: list[tuple[str, str, str, int]]  # (layer name, type, output shape, params)
    total: int
    trainable: int
    non_trainable: int

    def __str__(self) -> str:
        w_name = max(28, *(len(f"{n} ({t})") + 1 for n, t, _, _ in self.rows))
        w_shape = max(25, *(len(s) + 1 for _, _, s, _ in self.rows))
        width = w_name + w_shape + 12
        lines = [f'Model: "{self.name}"', "_" * width,
                 f"{'Layer (type)':<{w_name}}{'Output Shape':<{w_shape}}Param #", "=" * width]
        for i, (n, t, s, p) in enumerate(self.rows):
            lines.append(f"{f'{n} ({t})':<{w_name}}{s:<{w_shape}}{p:,}")
            lines.append("=" * width if i == len(self.rows) - 1 else "_" * width)
        lines += [f"Total params: {self.total:,}", f"Trainable params: {self.trainable:,}",
                  f"Non-trainable params: {self.non_trainable:,}", "_" * width]
        return "\n".join(lines)


def summarize(model) -> Summary:
    shapes = model.output_shapes()
    h, w = model.input_size
    rows = [("input_1", "InputLayer", str((None, h, w, 3)), 0)]
    counted: set[int] = set()
    for layer in model.layers():
        n = 0
        for path in layer.param_modules:
            for p in model.get_submodule(path).parameters():
                if id(p) not in counted:
                    counted.add(id(p))
                    n += p.numel()
        rows.append((layer.name, layer.type, str(shapes.get(layer.name, "(not run)")), n))
    params = list(model.parameters())
    rest = sum(p.numel() for p in params if id(p) not in counted)
    if rest:  # parameters owned directly by container modules (e.g. a ViT's position embedding)
        rows.append(("(other parameters)", "-", "-", rest))
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    return Summary(model.config.name, rows, total, trainable, total - trainable)
