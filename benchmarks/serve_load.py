"""`headstart serve` under load (issue 27): locust (headless) against 127.0.0.1, beside offline `predict`.

    python benchmarks/serve_load.py                       # 1, 8, 32, 64 clients, 20 s each; ready time
    python benchmarks/serve_load.py --soak 600            # then 10 minutes at 8 clients: errors, memory growth
    python benchmarks/serve_load.py --run RUN --images DIR

The run (default: a Lite0 probe trained here on 300 ELPV cells, views none, exported to ONNX so the server starts
without torch) is served by a real `headstart serve` process. Measured in one run, on the same images:
- ready time: from starting the process to the first 200 on /health;
- offline throughput: `headstart.load(RUN).predict(paths)` (the batch path of `headstart predict`), img/s;
- per client count: locust headless, each client posting one image per request in a loop for ``--seconds``;
  requests/s, p50 and p99 latency, failures (locust's own stats CSV);
- soak (``--soak S``): S seconds at 8 clients; failures and the server's resident memory (VmRSS) at the start
  of the soak and at its end.
Everything is bounded: each locust run stops after ``--seconds`` (``--soak``), and the server is stopped with
SIGTERM at the end. Locust shares the machine's cores with the server: on 2 cores that costs throughput, and the
ratio to offline throughput says so.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

LOCUSTFILE = '''
import itertools, os
from locust import HttpUser, constant, task

FILES = [os.path.join(os.environ["IMAGES"], f) for f in sorted(os.listdir(os.environ["IMAGES"]))]
DATA = [(os.path.basename(f), open(f, "rb").read()) for f in FILES]
NEXT = itertools.cycle(DATA)

class Client(HttpUser):
    wait_time = constant(0)

    @task
    def predict(self):
        name, data = next(NEXT)
        self.client.post("/predict", files={"file": (name, data, "image/png")}, name="/predict")
'''


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(work: Path, n: int = 300) -> tuple[Path, Path]:
    """A Lite0 probe on ``n`` ELPV cells (views none), exported; the images it serves: 64 other cells."""
    import shutil

    from headstart.data import make_elpv
    from headstart.export import export_run
    from headstart.training import train

    elpv = work / "elpv"
    if not (elpv / "labels.csv").is_file():
        make_elpv(elpv)
    rows = list(csv.DictReader(open(elpv / "labels.csv")))
    data, images = work / "data", work / "images"
    for i, r in enumerate(rows[: n + 64]):
        dest = (data / r["label"] / Path(r["path"]).name) if i < n else (images / Path(r["path"]).name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy(elpv / r["path"], dest)
    run = work / "run"
    if not (run / "model.onnx").is_file():
        train(data, run, strategy="probe", views="none", progress=False, overwrite=True, test_split=0.0)
        export_run(run)
    return run, images


def offline(run: Path, images: Path, repeat: int = 4) -> float:
    import headstart

    paths = sorted(str(p) for p in images.iterdir()) * repeat
    trained = headstart.load(run)
    trained.predict(paths[:8])  # warm: sessions, workers
    t = time.perf_counter()
    trained.predict(paths)
    return len(paths) / (time.perf_counter() - t)


def start(run: Path, port: int) -> tuple[subprocess.Popen, float]:
    return healthy([sys.executable, "-m", "headstart", "serve", str(run), "--port", str(port)], port)


def healthy(argv: list[str], port: int, limit: float = 90) -> tuple[subprocess.Popen, float]:
    """Start ``argv`` and wait for its first 200 on /health; (process, seconds it took)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - t < limit:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, time.perf_counter() - t
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit(f"{argv[1]} did not become healthy within {limit:.0f} s")


def locust(url: str, images: Path, users: int, seconds: int, work: Path) -> dict:
    f = work / "locustfile.py"
    f.write_text(LOCUSTFILE)
    prefix = work / f"locust-{users}"
    subprocess.run([sys.executable, "-m", "locust", "-f", str(f), "--headless", "-u", str(users), "-r", str(users),
                    "--run-time", f"{seconds}s", "--host", url, "--csv", str(prefix), "--only-summary",
                    "--stop-timeout", "5"], env={**os.environ, "IMAGES": str(images)}, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60)
    row = next(r for r in csv.DictReader(open(f"{prefix}_stats.csv")) if r["Name"] == "/predict")
    return {"users": users, "rps": float(row["Requests/s"]), "p50_ms": float(row["50%"]),
            "p99_ms": float(row["99%"]), "requests": int(row["Request Count"]), "failures": int(row["Failure Count"])}


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--images", type=Path)
    ap.add_argument("--users", default="1,8,32,64")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--soak", type=int, default=0, help="seconds at 8 clients after the sweep (0: none)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "headstart-serve-load")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    run, images = (args.run, args.images) if args.run else prepare(args.work)
    base = offline(run, images)
    port = _port()
    proc, ready = start(run, port)
    url = f"http://127.0.0.1:{port}"
    out = {"ready_s": round(ready, 2), "offline_img_s": round(base, 1), "sweep": [], "soak": None}
    print(f"ready in {ready:.2f} s; offline predict {base:.1f} img/s", flush=True)
    try:
        for users in (int(u) for u in args.users.split(",")):
            r = locust(url, images, users, args.seconds, args.work)
            r["vs_offline"] = round(r["rps"] / base, 2)
            out["sweep"].append(r)
            print(f"{users:>3} clients: {r['rps']:.1f} req/s ({r['vs_offline']:.2f}× offline), p50 {r['p50_ms']:.0f} ms, "
                  f"p99 {r['p99_ms']:.0f} ms (p99/p50 {r['p99_ms'] / max(r['p50_ms'], 1e-9):.2f}), "
                  f"{r['failures']} failures of {r['requests']}", flush=True)
        if args.soak:
            before = rss_mb(proc.pid)
            r = locust(url, images, 8, args.soak, args.work)
            after = rss_mb(proc.pid)
            out["soak"] = {**r, "rss_start_mb": round(before, 1), "rss_end_mb": round(after, 1),
                           "growth": round(after / before - 1, 4)}
            print(f"soak {args.soak} s at 8 clients: {r['requests']} requests, {r['failures']} failures; RSS "
                  f"{before:.0f} → {after:.0f} MB ({100 * (after / before - 1):+.1f} %)", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        out["exit_code"] = proc.wait(timeout=30)
    print(f"server exit code after SIGTERM: {out['exit_code']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
