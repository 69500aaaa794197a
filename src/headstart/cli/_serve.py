"""`headstart serve RUN`: the trained classifier behind HTTP (FastAPI + uvicorn), with dynamic batching."""
from __future__ import annotations

import argparse

from .._serve_parts import ServeConfig
from ..config import add_setting_arguments, settings_from_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a trained run over HTTP: /predict, /health, /metrics, /docs and a drop-an-image page",
        description="Serve a run trained by `headstart train`. POST /predict takes multipart `file` fields or JSON "
                    "{\"images\": [base64, …]} and ?top=K, and answers what `headstart predict RUN FILES --json` "
                    "prints (the run's views included). Concurrent images are batched (--max-batch, "
                    "--max-wait-ms) through the run's cached ONNX export on a CPU, or the GPU with --device cuda. "
                    "GET /health is 200 once the model is warmed up; GET /metrics is Prometheus text; GET / is a "
                    "page where you drop an image. Uploads are never written to disk. Binds 127.0.0.1 unless "
                    "told otherwise; SIGTERM lets in-flight requests finish, then exits 0.",
        epilog="examples:\n"
               "  headstart serve runs/elpv                           # http://127.0.0.1:8000/\n"
               "  curl -F file=@cell.png 'http://127.0.0.1:8000/predict?top=2'\n"
               "  headstart serve runs/elpv --port 9000 --api-key s3cret --max-batch 32\n"
               "  curl -H 'X-API-Key: s3cret' -F file=@a.png -F file=@b.png http://127.0.0.1:9000/predict",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run directory")
    add_setting_arguments(p, ServeConfig, defaults=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HeadstartError

    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise HeadstartError(f"`headstart serve` needs the serve extra ({exc.name} is missing): "
                             f"pip install 'headstart[serve]'.") from None
    from ..serve import serve

    config = ServeConfig(**settings_from_args(args, ServeConfig))
    print(f"serving {args.run} on http://{config.host}:{config.port}/ (Ctrl-C or SIGTERM to stop)", flush=True)
    return serve(args.run, config)
