"""`headstart serve` (issue 27): the real server (uvicorn) on a free loopback port, a tiny trained run, every
endpoint, every bad input, batching under concurrency (answers equal `predict --json`'s), 503 when the queue is
full, an API key, a damaged run refused at start, SIGTERM, and the page in a real browser."""
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from headstart.training import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from conftest import make_two_classes

    root = tmp_path_factory.mktemp("serve")
    images = make_two_classes(root / "images", 8, noise=25)
    out = root / "run"
    train(images, out, strategy="probe", model="test_resnet", weights=None, input_shape=(32, 32, 3),
          views="hflip", progress=False, workers=0, copy_check=False)
    return out, sorted(images.rglob("*.png"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run: Path, *args: str, env=None):
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "headstart", "serve", str(run), "--port", str(self.port),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        t0 = time.time()
        while time.time() - t0 < 60:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                if self.get("/health")[0] == 200:
                    self.ready_s = time.time() - t0
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not become healthy in 60 s")

    def get(self, path: str, headers=None):
        return _call(urllib.request.Request(self.url + path, headers=headers or {}))

    def post(self, path: str, body: bytes, content_type: str, headers=None):
        req = urllib.request.Request(self.url + path, data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
        return _call(req)

    def predict(self, files: list[tuple[str, bytes]], top: int = 1, headers=None):
        body, ctype = _multipart(files)
        return self.post(f"/predict?top={top}", body, ctype, headers)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


def _call(req):
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, data in files:
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                  f"Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def server(run):
    s = Server(run[0], "--max-body", "1", "--max-wait-ms", "30")
    yield s
    assert s.stop() == 0


def test_endpoints_answer_as_predict_does(server, run):
    from headstart.cli import main

    paths = [str(p) for p in run[1][:2]] + [str(run[1][-1])]
    status, body, _ = server.get("/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["views"] == "hflip" and health["classes"] == ["a", "b"]
    status, body, _ = server.predict([(Path(p).name, Path(p).read_bytes()) for p in paths], top=2)
    assert status == 200
    served = json.loads(body)
    r = subprocess.run([sys.executable, "-m", "headstart", "predict", str(run[0]), *paths, "--json", "--top", "2"],
                       capture_output=True, text=True, check=True)
    offline = json.loads(r.stdout)
    assert [Path(d["path"]).name for d in offline] == [d["path"] for d in served]
    for a, b in zip(offline, served):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        assert all(abs(p["probability"] - q["probability"]) < 1e-5 for p, q in zip(a["predictions"], b["predictions"]))
    encoded = json.dumps({"images": [base64.b64encode(Path(paths[0]).read_bytes()).decode()]}).encode()
    status, body, _ = server.post("/predict?top=2", encoded, "application/json")
    assert status == 200 and json.loads(body)[0]["predictions"] == served[0]["predictions"]
    assert json.loads(body)[0]["path"] == "<image 0>"
    status, body, _ = server.get("/openapi.json")
    assert status == 200 and "/predict" in json.loads(body)["paths"]
    assert server.get("/docs")[0] == 200 and b"Drop an image" in server.get("/")[1]
    status, body, headers = server.get("/metrics")
    text = body.decode()
    assert status == 200 and 'headstart_requests_total{path="/predict",status="200"}' in text
    assert "headstart_batch_size_bucket" in text and "headstart_request_seconds_bucket" in text
    del main


def _bomb() -> bytes:
    b = io.BytesIO()
    Image.new("1", (15000, 15000)).save(b, "PNG")  # 225 M pixels in ~30 KB
    return b.getvalue()


def _announce(server, size: int):
    """Headers announcing a ``size``-byte upload, then the answer: the server refuses before the body is sent."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    c.putrequest("POST", "/predict")
    c.putheader("Content-Type", "multipart/form-data; boundary=x")
    c.putheader("Content-Length", str(size))
    c.endheaders()
    r = c.getresponse()
    out = r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return out


def test_bad_input_gets_a_4xx_naming_the_cause_and_the_next_request_is_served(server, run):
    good = run[1][0].read_bytes()
    jpeg = io.BytesIO()
    Image.open(run[1][0]).convert("RGB").save(jpeg, "JPEG")
    cases = [
        ("not an image", server.predict([("notes.txt", b"hello, not pixels")]), 400, "not an image"),
        ("truncated JPEG", server.predict([("cut.jpg", jpeg.getvalue()[:200])]), 400, "truncated"),
        ("empty file", server.predict([("empty.png", b"")]), 400, "empty"),
        ("decompression bomb", server.predict([("bomb.png", _bomb())]), 400, "decompression bomb"),
        ("over --max-body", _announce(server, 1_200_000), 413, "limit"),
        ("wrong content type", server.post("/predict", good, "image/png"), 415, "content type"),
        ("JSON without an image", server.post("/predict", b'{"pictures": []}', "application/json"), 400,
         "without images"),
        ("base64 that is not", server.post("/predict", b'{"images": ["%%%"]}', "application/json"), 400, "base64"),
        ("no file field", server.post("/predict", *_multipart([])), 400, "no image"),
    ]
    for what, (status, body, _), expected, words in cases:
        answer = json.loads(body)
        assert status == expected and words in answer["error"] and answer["status"] == expected, (what, answer)
        assert server.predict([("ok.png", good)])[0] == 200, f"after {what}"
    assert server.proc.poll() is None


def test_concurrent_requests_are_batched_and_answer_as_alone(server, run):
    files = [(p.name, p.read_bytes()) for p in run[1]]
    alone = {name: json.loads(server.predict([(name, data)], top=2)[1])[0] for name, data in files}
    before = _batches(server)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda f: server.predict([f], top=2), files * 2))
    assert all(status == 200 for status, _, _ in answers)
    for status, body, _ in answers:
        got = json.loads(body)[0]
        assert got["predictions"][0]["label"] == alone[got["path"]]["predictions"][0]["label"]
        assert abs(got["predictions"][0]["probability"] - alone[got["path"]]["predictions"][0]["probability"]) < 1e-5
    count, images = (a - b for a, b in zip(_batches(server), before))
    assert images == 2 * len(files) and count < images  # some model calls carried several requests' images


def _batches(server) -> tuple[float, float]:
    text = server.get("/metrics")[1].decode()
    value = lambda name: float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))  # noqa: E731
    return value("headstart_batch_size_count"), value("headstart_batch_size_sum")


def test_a_full_queue_answers_503_and_recovers(run):
    s = Server(run[0], "--max-queue", "2", "--max-wait-ms", "300", "--max-batch", "64")
    try:
        data = run[1][0].read_bytes()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: s.predict([("x.png", data)] * 2), range(8)))
        busy = [a for a in answers if a[0] == 503]
        assert busy and all(a[2].get("retry-after") == "1" and b"busy" in a[1] for a in busy)
        assert s.predict([("x.png", data)])[0] == 200
    finally:
        assert s.stop() == 0


def test_api_key_and_sigterm(run, tmp_path):
    import numpy as np

    spool = tmp_path / "tmp"
    spool.mkdir()
    s = Server(run[0], "--api-key", "s3cret", env={"TMPDIR": str(spool)})
    data = run[1][0].read_bytes()
    big = io.BytesIO()  # a 2 MB upload: Starlette would spool it to a temporary file; the server must not
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)).save(big, "PNG")
    assert len(big.getvalue()) > 1 << 21
    assert s.predict([("big.png", big.getvalue())], headers={"X-API-Key": "s3cret"})[0] == 200
    assert s.get("/health")[0] == 200  # health stays open (load balancers)
    assert s.predict([("x.png", data)])[0] == 401
    assert s.predict([("x.png", data)], headers={"X-API-Key": "wrong"})[0] == 401
    assert s.get("/metrics")[0] == 401
    assert s.predict([("x.png", data)], headers={"X-API-Key": "s3cret"})[0] == 200
    assert s.predict([("x.png", data)], headers={"Authorization": "Bearer s3cret"})[0] == 200
    assert s.stop() == 0  # SIGTERM: graceful, exit 0


def test_a_damaged_run_is_refused_at_start(run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run[0], bad)
    (bad / "model.safetensors").write_bytes(b"\0" * 64)
    r = subprocess.run([sys.executable, "-m", "headstart", "serve", str(bad), "--port", str(_port())],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_the_page_shows_labels_for_a_dropped_image(server, run, tmp_path):
    from test_report import _browser

    sync_playwright, exe = _browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url + "/")
        _drop(page, Path(run[1][0]).read_bytes(), "cell.png", "image/png")  # a real drop event, as a user's
        page.wait_for_selector(".prediction", timeout=15000)
        rows = page.locator(".prediction").all_inner_texts()
        assert len(rows) == 2 and rows[0].split("\n")[0].strip() in ("a", "b") and "%" in rows[0]
        _drop(page, b"not an image", "notes.txt", "text/plain")  # the server's refusal reaches the page
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=15000)
        assert "notes.txt" in page.inner_text("#error") and page.locator(".prediction").count() == 0
        page.set_input_files("#file", str(run[1][0]))  # and the file picker
        page.wait_for_selector(".prediction", timeout=15000)
        assert page.locator(".prediction").count() == 2
        page.click("#explain")  # the Grad-CAM overlay of that image
        page.wait_for_function("document.getElementById('cam').naturalWidth > 0", timeout=60000)
        assert page.evaluate("document.getElementById('cam').naturalWidth") > page.evaluate(
            "document.getElementById('cam').naturalHeight")  # image | heat map, side by side
        browser.close()


def test_explain_answers_a_gradcam_png_of_the_top_class(server, run):
    import numpy as np

    pytest.importorskip("captum")
    data = run[1][0].read_bytes()
    body, ctype = _multipart([("cell.png", data)])
    status, png, headers = server.post("/explain", body, ctype)
    assert status == 200 and headers["content-type"] == "image/png"
    im = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    h, w, _ = im.shape
    assert w > 2 * min(h, 256) - 1  # the image and its heat map side by side, above a caption
    half = (w - 8) // 2
    left, right = im[:half, :half], im[:half, half + 8:2 * half + 8]
    assert np.abs(left - right).mean() > 5  # the right half carries the heat map, not a copy of the image
    for bad, status_ in ((b"not an image", 400), (b"", 400)):
        body, ctype = _multipart([("x.png", bad)])
        assert server.post("/explain", body, ctype)[0] == status_
    body, ctype = _multipart([("a.png", data), ("b.png", data)])
    status, err, _ = server.post("/explain", body, ctype)
    assert status == 400 and b"one image" in err
    assert server.predict([("cell.png", data)])[0] == 200  # and predictions still flow


def _drop(page, data: bytes, name: str, mime: str) -> None:
    """Dispatch dragover + drop on the page's drop zone with a DataTransfer holding one file."""
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
           const dt = new DataTransfer(); dt.items.add(new File([bytes], name, {type: mime})); return dt; }""",
        [base64.b64encode(data).decode(), name, mime])
    page.dispatch_event("#drop", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def test_a_large_upload_stays_in_memory(monkeypatch):
    """Starlette spools a multipart file over 1 MB to a temporary file (on disk); the server must not."""
    import asyncio
    import tempfile

    from starlette.requests import Request

    from headstart._serve_parts import _from_multipart

    rolled = []
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", lambda self: rolled.append(self))
    body, ctype = _multipart([("big.bin", b"x" * (3 << 20))])
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-type", ctype.encode())]}
    got = asyncio.run(_from_multipart(Request(scope), body))
    assert got == [("big.bin", b"x" * (3 << 20))] and not rolled


def test_workers_serve_the_same_answers_and_stop_on_sigterm(server, run):
    """`--workers 2`: two processes behind one port (each loads the run); both answer as one does; SIGTERM
    stops the supervisor and its workers, exit 0."""
    files = [(p.name, p.read_bytes()) for p in run[1][:3]]
    want = json.loads(server.predict(files, top=2)[1])
    s = Server(run[0], "--workers", "2")
    try:
        for _ in range(6):  # enough requests that both processes take some
            status, body, _ = s.predict(files, top=2)
            assert status == 200 and json.loads(body) == want
        children = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2, children
    finally:
        assert s.stop() == 0
    time.sleep(0.5)
    assert not [pid for pid in children if _running(pid)], "a worker outlived the server"


def _running(pid: str) -> bool:
    """Alive and not a zombie (a container's PID 1 may never reap the orphans it inherits)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
