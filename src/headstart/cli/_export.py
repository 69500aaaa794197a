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
        epilog="examples:\n  headstart export runs/elpv\n  headstart export runs/elpv --out elpv.onnx\n\n"
               "--int8 also writes RUN/model.int8.onnx when it keeps the test accuracy within 1 point of fp32's "
               "(then: predict --int8, serve --backend int8)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")
    p.add_argument("--out", metavar="FILE", help="where to write (default RUN/model.onnx)")
    p.add_argument("--int8", action="store_true",
                   help="also write RUN/model.int8.onnx: ONNX Runtime static quantization calibrated on the run's own "
                        "images (not its test split); refused when it loses more than 1 point of test accuracy")
    p.add_argument("--calibrate", metavar="DIR", help="--int8: calibrate on these images instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_int8, export_run

    r = export_run(args.run, format=args.format, out=args.out)
    speed = r.get("speed", {})
    print(f"wrote {r['path']} (input {'x'.join(map(str, r['input_size']))}, parity with PyTorch "
          f"{r['parity']:.1e} of the output scale; single-threaded {speed.get('onnxruntime')} img/s vs PyTorch "
          f"{speed.get('torch')} img/s)")
    if args.int8:
        q = export_int8(args.run, calibrate=args.calibrate)
        s = q["speed_img_s_single_thread"]
        print(f"wrote {q['path']}: test accuracy {q['int8_accuracy']:.2%} (fp32 {q['fp32_accuracy']:.2%}, "
              f"{q['test_images']} images), single-threaded {s['int8']} img/s vs fp32 {s['fp32']} img/s "
              f"({s['int8'] / s['fp32']:.2f}×); calibrated on {q['calibration_images']} images")
    return 0
