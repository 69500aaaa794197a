"""Arguments and parsers shared by several subcommands."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import HeadstartError


def add_model_arguments(p: argparse.ArgumentParser, default: str | None = "lite0") -> None:
    """The Keras switches, shared by every command that builds a model."""
    g = p.add_argument_group("model")
    if default is not None:
        g.add_argument("--model", "-m", default=default, help=f"model name (default: {default}); see `headstart models`")
    g.add_argument("--weights", default="imagenet",
                   help="'imagenet' (default), 'none' for random init, or a .pth/.safetensors path")


def weights_arg(value: str) -> str | None:
    return None if value.lower() == "none" else value


def parse_shape(value: str | None) -> tuple[int, int, int] | None:
    """'300,300' or '480x640' → (300, 300, 3)."""
    if value is None:
        return None
    parts = value.replace("x", ",").replace("×", ",").split(",")
    try:
        nums = [int(v) for v in parts if v.strip()]
    except ValueError:
        nums = []
    if len(nums) == 3 and nums[2] == 3:
        nums = nums[:2]
    if len(nums) != 2:
        raise HeadstartError(f"--input-shape expects HEIGHT,WIDTH such as 300,300 or 480,640; received {value!r}.")
    return nums[0], nums[1], 3


def print_results(results, as_json: bool) -> int:
    """Print classify/predict results (errors on stderr, one line each); exit code 1 if any image failed."""
    for r in results:
        if not r.ok:
            print(f"error: {r.path}: {r.error}", file=sys.stderr)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.ok:
                print(f"{r.path}: " + ", ".join(str(p) for p in r.predictions))
    return 1 if any(not r.ok for r in results) else 0


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """How the network runs; the results agree across backends within headstart.backends.PARITY_TOL."""
    g = p.add_argument_group("execution")
    g.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                   help="auto (default): ONNX Runtime on a CPU when installed, parity-checked and faster, "
                        "else PyTorch; the choice is printed with -v and recorded")
    g.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1 …")


def at_least(minimum: int):
    """argparse type: an integer ≥ ``minimum``, with a message that says so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer ≥ {minimum}; received {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer ≥ {minimum}; received {value}")
        return value

    parse.__name__ = f"integer ≥ {minimum}"
    return parse
