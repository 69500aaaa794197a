"""The request side of :mod:`headstart.serve`: its settings (torch- and numpy-free: the CLI parser reads them),
reading a body within its limit, the two upload forms, JSON errors, and the Prometheus metrics."""
from __future__ import annotations

import base64
import binascii
import json

from dataclasses import dataclass

from .config import setting

__all__ = ["read_images", "refuse", "Metrics", "Refusal", "ServeConfig"]


@dataclass
class ServeConfig:
    """Everything `headstart serve` accepts."""

    host: str = setting("127.0.0.1", "address to bind (127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    port: int = setting(8000, "TCP port", minimum=0, maximum=65535)
    backend: str = setting("auto", "auto (the run's cached ONNX export on a CPU), onnx, torch, or int8 (the run's "
                           "quantized export: `headstart export RUN --int8`)", choices=("auto", "onnx", "torch", "int8"))
    device: str | None = setting(None, "cpu, cuda, cuda:1 … (default: the CPU)")
    max_batch: int = setting(16, "images run through the model together at most", minimum=1)
    max_wait_ms: float = setting(5.0, "how long the first image of a batch waits for more", minimum=0)
    max_body: float = setting(20.0, "largest request body in MB (larger: 413)", above=0)
    max_queue: int = setting(256, "images waiting at most; beyond it requests get 503 with Retry-After", minimum=1)
    workers: int = setting(1, "server processes (each loads the model)", minimum=1)
    api_key: str | None = setting(None, "require this key (header X-API-Key or Authorization: Bearer KEY) on "
                                  "/predict and /metrics")
    decode_threads: int = setting(0, "threads that decode uploads (0: one per core)", minimum=0)


class Refusal(Exception):
    """A request refused with an HTTP ``status`` and a message naming the cause."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def refuse(status: int, message: str, retry_after: int | None = None):
    """A JSON error: ``{"error": message, "status": status}``."""
    from fastapi.responses import JSONResponse

    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


async def _body(request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (announced or streamed)."""
    announced = request.headers.get("content-length")
    if announced and announced.isdigit() and int(announced) > limit:
        raise Refusal(413, f"the body is {int(announced) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB "
                            f"(--max-body)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refusal(413, f"the body is over the limit of {limit / 1e6:.1f} MB (--max-body)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_images(request, limit: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in the request: multipart ``file`` fields, or JSON ``{"images": [base64]}``
    (names ``<image i>``). Anything else is a :class:`Refusal` naming what was expected."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise Refusal(415, f"content type {kind or 'none'!r} is not accepted; send multipart/form-data with "
                            f"`file` fields, or application/json {{\"images\": [base64, …]}}")
    body = await _body(request, limit)
    if kind == "application/json":
        return _from_json(body)
    return await _from_multipart(request, body)


def _from_json(body: bytes) -> list[tuple[str, bytes]]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "the body is not valid JSON; expected {\"images\": [base64, …]}") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not images or not all(isinstance(s, str) for s in images):
        raise Refusal(400, "JSON without images: expected {\"images\": [base64, …]} with at least one string")
    out = []
    for i, s in enumerate(images):
        try:
            out.append((f"<image {i}>", base64.b64decode(s.split(",", 1)[-1] if s.startswith("data:") else s,
                                                          validate=True)))
        except (binascii.Error, ValueError):
            raise Refusal(400, f"images[{i}] is not base64") from None
    return out


async def _from_multipart(request, body: bytes) -> list[tuple[str, bytes]]:
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def replay():  # the body was read once (to bound it); the form parser reads it again from memory
        return {"type": "http.request", "body": body, "more_body": False}

    from starlette.formparsers import MultiPartParser

    # Starlette spools an uploaded file over 1 MB to a temporary file on disk; the body is already in memory and
    # bounded by --max-body, so its parts stay in memory too: the server writes no user file to disk.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, len(body) + 1)

    try:
        form = await Request(request.scope, replay).form()
    except Exception as exc:  # a malformed multipart body
        raise Refusal(400, f"malformed multipart body ({type(exc).__name__}: {str(exc)[:120]})") from None
    files = [v for k, v in form.multi_items() if k == "file" and isinstance(v, UploadFile)]
    if not files:
        raise Refusal(400, "no image: send one or more multipart fields named `file`")
    return [(f.filename or f"<image {i}>", await f.read()) for i, f in enumerate(files)]


class Metrics:
    """Requests, errors, latency and batch sizes, in a registry of their own (prometheus-client)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        self.registry = CollectorRegistry()
        self.requests = Counter("headstart_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.errors = Counter("headstart_errors", "requests answered 4xx or 5xx", ["path", "status"],
                              registry=self.registry)
        self.latency = Histogram("headstart_request_seconds", "request latency", ["path"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.batch_size = Histogram("headstart_batch_size", "images per model call", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.queue = Gauge("headstart_queue_images", "images waiting for the model", registry=self.registry)
        self.content_type = CONTENT_TYPE_LATEST

    def observe(self, path: str, status: int, seconds: float) -> None:
        path = path if path in ("/predict", "/health", "/metrics", "/") else "other"
        self.requests.labels(path, str(status)).inc()
        if status >= 400:
            self.errors.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def render(self, pending: int) -> bytes:
        from prometheus_client import generate_latest

        self.queue.set(pending)
        return generate_latest(self.registry)

