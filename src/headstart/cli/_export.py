"""`headstart export RUN --format onnx`: a trained run as an ONNX file with a parity check."""
from __future__ import annotations

import argparse



def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export a trained run (ONNX), checked against PyTorch",
        description="Export a run trained by `headstart train` to ONNX (input: a preprocessed batch N×3×H×W; "
                    "output: class probabilities). The export is checked against PyTorch (max difference ≤ 1e-4 "
                    "of the output scale) and recorded with its SHA-256 in FILE.json. By default it is written to "
                    "RUN/model.onnx, where `headstart predict` / `evaluate` use it on the CPU.",
        epilog="examples:\n  headstart export runs/elpv\n  headstart export runs/elpv --out elpv.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")
    p.add_argument("--out", metavar="FILE", help="where to write (default RUN/model.onnx)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_run

    r = export_run(args.run, format=args.format, out=args.out)
    speed = r.get("speed", {})
    print(f"wrote {r['path']} (input {'x'.join(map(str, r['input_size']))}, parity with PyTorch "
          f"{r['parity']:.1e} of the output scale; single-threaded {speed.get('onnxruntime')} img/s vs PyTorch "
          f"{speed.get('torch')} img/s)")
    return 0
