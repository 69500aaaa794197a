"""FastAPI (`headstart serve`) vs LitServe for the same run, side by side in one run (issue 27: "pick by a measured
comparison").

    python benchmarks/serve_compare.py        # after benchmarks/serve_load.py has prepared its run

Both servers load the same exported run through `headstart.serve.ServedModel` (the same predictor, views and ONNX
Runtime session settings), batch up to 16 images within 5 ms, and answer the same JSON; locust headless posts one
image per request at 8 and 32 clients for 20 s each, against 127.0.0.1, one server at a time.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import _port, healthy, locust, start  # noqa: E402


def start_litserve(run: Path, port: int) -> tuple[subprocess.Popen, float]:
    return healthy([sys.executable, str(Path(__file__).with_name("litserve_app.py")), str(run), str(port)], port)


def main() -> int:
    work = Path("/tmp/headstart-serve-load")
    run, images = work / "run", work / "images"
    for name, starter in (("headstart serve (FastAPI + uvicorn)", start), ("LitServe", start_litserve)):
        port = _port()
        proc, ready = starter(run, port)
        try:
            for users in (8, 32):
                r = locust(f"http://127.0.0.1:{port}", images, users, 20, work)
                print(f"{name}: ready {ready:.2f} s; {users} clients {r['rps']:.1f} req/s, p50 {r['p50_ms']:.0f} ms, "
                      f"p99 {r['p99_ms']:.0f} ms, {r['failures']} failures of {r['requests']}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
