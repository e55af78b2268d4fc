"""The HTTP inspection service of ``pyimgano serve`` (FastAPI on uvicorn; docs/serve.md).

FastAPI gives the OpenAPI page (``/docs``) from the routes themselves and validates query
parameters; Starlette underneath parses multipart uploads (python-multipart); uvicorn
serves it and drains on SIGTERM; prometheus-client writes ``/metrics``. All four are the
``serve`` extra of pyimgano-core, imported only by this module.

Every image of a request is decoded from memory (:func:`pyimgano.images.decode_image`, the
pixel limit checked before decoding); a request never names a file: uploads' file names are
echoed back as labels only, and the review page is two files of this package read once.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import re
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import python_multipart  # noqa: F401 - Starlette's upload parser: missing, serve fails at start, not at an upload
from anyio import to_thread
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from pyimgano.errors import ImageLoadError, ImageTooLarge
from pyimgano.service.batcher import Batcher, Busy
from pyimgano.service.results import Pictures, image_record
from pyimgano.service.settings import ServeSettings

NAME_MAX = 100
RAW_TYPES = ("image/", "application/octet-stream")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
THREADS = max(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 4)
WARMUP_SIDE = 256  # the warm-up image's side when the pipeline does not know its image size


class RequestFailed(Exception):
    """Ends a request with ``status`` and a one-line ``{"error": ...}`` body; ``reason`` labels the metric."""

    def __init__(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers


class Metrics:
    """The Prometheus metrics of one service (a registry of its own, process metrics included)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter("pyimgano_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "code"], registry=r)
        self.errors = Counter("pyimgano_request_errors", "predict requests that failed, by reason", ["reason"],
                              registry=r)
        self.latency = Histogram("pyimgano_predict_seconds", "predict request latency, from arrival to answer",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("pyimgano_images_scored", "images scored", registry=r)
        self.anomalies = Counter("pyimgano_anomalies_flagged", "images labelled anomalous", registry=r)
        self.batch_images = Histogram("pyimgano_batch_images", "images per scored batch",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.batch_seconds = Histogram("pyimgano_batch_seconds", "time to score one batch", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.in_progress = Gauge("pyimgano_predict_in_progress", "predict requests being received, waiting or scored",
                                 registry=r)
        self.queued = Gauge("pyimgano_queued_images", "images waiting to be scored", registry=r)

    def on_batch(self, n: int, seconds: float) -> None:
        self.batch_images.observe(n)
        self.batch_seconds.observe(seconds)


def _label(name: str | None, index: int) -> str:
    """A printable label for an upload (never a path: used in answers and messages only)."""
    text = re.sub(r"[^\w .,()+=@#-]+", "_", str(name or ""))[:NAME_MAX].strip()
    return text or f"image {index}"


def _load_page(name: str) -> bytes:
    return resources.files("pyimgano.service").joinpath("static", name).read_bytes()


def warmup_image(pipe: Any) -> np.ndarray:
    """A mid-grey image at the size the pipeline was calibrated on (else 256 x 256)."""
    size = (pipe.calibration_ or {}).get("image_size") or [WARMUP_SIDE, WARMUP_SIDE]
    return np.full((int(size[0]), int(size[1]), 3), 128, dtype=np.uint8)


def model_description(pipe: Any, model_dir: str | Path, settings: ServeSettings) -> dict[str, Any]:
    """What ``GET /v1/model`` answers: detector, parameters, thresholds, calibration, versions, limits."""
    import platform

    from pyimgano import __version__
    from pyimgano.detector import fitted_attributes
    from pyimgano.limits import max_image_pixels

    saved = pipe.to_dict()
    calibration = dict(pipe.calibration_ or {})
    return jsonable_encoder({
        "detector": pipe.traits.name,
        "model_dir": str(model_dir),
        "params": pipe.detector.get_params(),
        "fitted": fitted_attributes(pipe.detector),
        "pixel_maps": pipe.traits.pixel_maps,
        "postprocess": [{k: v for k, v in step.items() if k != "state"} for step in saved["postprocess"]],
        "image_threshold": saved["image_threshold"],
        "pixel_threshold": saved["pixel_threshold"],
        "calibration": {
            "n_normal": calibration.get("n_normal"),
            "n_anomalous": calibration.get("n_anomalous"),
            "normal_scores": calibration.get("normal_scores"),
            "heatmap_range": calibration.get("heatmap_range"),
            "image_size": calibration.get("image_size"),
        },
        "few_shot": bool(saved.get("few_shot")),
        "versions": {"fitted_with": saved["versions"], "pyimgano": __version__, "python": platform.python_version()},
        "limits": {"max_images": settings.max_images, "max_body_bytes": settings.max_body_bytes,
                   "max_image_pixels": max_image_pixels(), "max_batch": settings.max_batch,
                   "timeout_s": settings.timeout_s},
    })


def create_app(pipe: Any, model_dir: str | Path, settings: ServeSettings | None = None, *,
               api_key: str | None = None, warmup: np.ndarray | None = None,
               on_fatal: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The service over a loaded, fitted pipeline.

    ``api_key``: required (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) on every
    route but ``/healthz``, ``/readyz`` and the static review page. ``warmup``: the image
    scored before ``/readyz`` says ready (default :func:`warmup_image`). ``on_fatal`` is
    called when the warm-up fails (the command stops the server and reports it).
    """
    settings = settings or ServeSettings()
    metrics = Metrics()
    pictures = Pictures(pipe)
    batcher = Batcher(pipe.predict, max_batch=settings.max_batch, window_s=settings.batch_window_ms / 1000,
                      max_queue=settings.max_queue, on_batch=metrics.on_batch)
    metrics.queued.set_function(lambda: batcher.queued_images)
    state: dict[str, Any] = {"ready": False, "warmup_error": None}
    description = model_description(pipe, model_dir, settings)
    page, script = _load_page("index.html"), _load_page("review.js")

    async def warm() -> None:
        try:
            await batcher.submit([warmup if warmup is not None else warmup_image(pipe)])
        except Exception as exc:  # noqa: BLE001 - reported by the command, one line
            state["warmup_error"] = exc
            if on_fatal is not None:
                on_fatal(exc)
            return
        state["ready"] = True

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # decoding and answers run on a few threads (the model has its own): fewer threads,
        # fewer malloc arenas, so memory settles instead of creeping with the load
        to_thread.current_default_thread_limiter().total_tokens = THREADS
        batcher.start()
        task = asyncio.create_task(warm())
        yield
        task.cancel()
        await run_in_threadpool(batcher.stop, settings.timeout_s)

    app = FastAPI(
        title="pyimgano inspection service",
        summary=f"{pipe.traits.name} from {Path(model_dir).name}: score images for anomalies",
        description="Visual anomaly detection for industrial inspection (docs/serve.md). The review page is at `/`.",
        lifespan=lifespan,
    )
    app.state.pyimgano, app.state.metrics, app.state.api_key = state, metrics, api_key
    guarded = [Depends(authorised)]

    @app.exception_handler(RequestFailed)
    async def _failed(request: Request, exc: RequestFailed) -> JSONResponse:
        if request.url.path == "/v1/predict":
            metrics.errors.labels(exc.reason).inc()
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    app.add_middleware(_CountRequests, metrics=metrics)

    @app.get("/", include_in_schema=False)
    async def review_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/review.js", include_in_schema=False)
    async def review_script() -> Response:
        return Response(script, media_type="text/javascript")

    @app.get("/healthz", summary="the process is alive (no API key needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="the model is loaded and a warm-up image was scored (no API key needed)",
             responses={503: {"description": "warming up, or the warm-up failed"}})
    async def readyz() -> JSONResponse:
        if state["ready"]:
            return JSONResponse({"status": "ready", "detector": pipe.traits.name})
        error = state["warmup_error"]
        return JSONResponse({"status": "warm-up failed" if error else "warming up",
                             **({"error": str(error)} if error else {})}, status_code=503)

    @app.get("/v1/model", dependencies=guarded,
             summary="the detector, its parameters, thresholds, calibration scores, versions and limits")
    async def model() -> dict[str, Any]:
        return description

    @app.get("/metrics", dependencies=guarded, summary="Prometheus metrics (text format)",
             response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    predict_body = {
        "requestBody": {
            "required": True,
            "description": f"images as multipart/form-data (any number of file parts, up to max_images = "
                           f"{settings.max_images}), or one image as the raw body (Content-Type image/*)",
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }

    @app.post("/v1/predict", dependencies=guarded, openapi_extra=predict_body,
              summary="score images: per image score, label, threshold, margin, p-value, regions (and maps)",
              responses={400: {"description": "no image, or one that cannot be decoded (named)"},
                         401: {"description": "missing or wrong API key"},
                         408: {"description": "the upload did not arrive within timeout_s"},
                         413: {"description": "body, images per request or image pixels over their limit"},
                         503: {"description": "the queue is full; retry"},
                         504: {"description": "not scored within timeout_s"}})
    async def predict(request: Request, maps: Annotated[bool, Query(description="add the heatmap (over the image) "
                                                                    "and the mask as base64 PNG")] = False
                      ) -> JSONResponse:
        started = time.perf_counter()
        metrics.in_progress.inc()
        try:
            return await _predict(request, maps, started)
        finally:
            metrics.in_progress.dec()

    async def _predict(request: Request, want_maps: bool, started: float) -> JSONResponse:
        deadline = started + settings.timeout_s
        try:
            body = await asyncio.wait_for(_read_body(request), settings.timeout_s)
        except TimeoutError:
            raise RequestFailed(408, "slow_upload", f"the request body did not arrive within "
                                f"{settings.timeout_s:g} s (timeout_s)") from None
        except ClientDisconnect:
            return _gone()
        parts = await _parts(request, body)
        del body
        images = await run_in_threadpool(_decode_all, parts)
        names = [name for name, _ in parts]
        del parts
        submit = asyncio.ensure_future(batcher.submit(images))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({submit, gone}, timeout=max(0.0, deadline - time.perf_counter()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not submit.done():
                submit.cancel()  # withdrawn from the queue: a batch not yet scored skips it
        if submit not in done:
            if gone in done:
                return _gone()
            raise RequestFailed(504, "timeout", f"not scored within {settings.timeout_s:g} s (timeout_s); "
                                "the service is overloaded")
        try:
            scored = submit.result()
        except Busy as exc:
            raise RequestFailed(503, "busy", str(exc), {"Retry-After": "1"}) from None
        answer = await run_in_threadpool(_answer, scored, images, names, want_maps)
        metrics.images.inc(len(images))
        metrics.anomalies.inc(sum(1 for item in answer["images"] if item["label"] == 1))
        metrics.latency.observe(time.perf_counter() - started)
        return JSONResponse(answer)

    def _gone() -> JSONResponse:
        """The client went away: counted, and an answer nobody reads (499, as nginx logs it)."""
        metrics.errors.labels("disconnected").inc()
        return JSONResponse({"error": "client disconnected"}, status_code=499)

    async def _read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise RequestFailed(413, "too_large", f"request body of {int(declared):,} bytes is over the limit of "
                                f"{settings.max_body_bytes:,} (max_body_mb)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body_bytes:
                raise RequestFailed(413, "too_large", f"request body over the limit of {settings.max_body_bytes:,} "
                                    "bytes (max_body_mb)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _parts(request: Request, body: bytes) -> list[tuple[str, bytes]]:
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            async def replay() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            try:
                form = await Request(request.scope, replay).form(max_files=settings.max_images + 1, max_fields=64)
            except Exception as exc:  # noqa: BLE001 - Starlette's parser raises several kinds
                raise RequestFailed(400, "bad_request", f"malformed multipart body: {exc}") from None
            uploads = [value for _, value in form.multi_items() if hasattr(value, "read")]
            if len(uploads) > settings.max_images:
                raise RequestFailed(413, "too_many_images", f"more than {settings.max_images} images in one "
                                    "request (max_images)")
            parts = [(_label(upload.filename, i), await upload.read()) for i, upload in enumerate(uploads)]
            await form.close()
        elif kind.startswith(RAW_TYPES) or (not kind and body):
            parts = [(_label(None, 0), body)]
        else:
            raise RequestFailed(400, "bad_request", f"Content-Type {kind or 'none'!r}: send multipart/form-data "
                                "with image files, or one image as the body (image/png, image/jpeg...)")
        if not parts:
            raise RequestFailed(400, "bad_request", "no image in the request (multipart file parts, or a raw body)")
        return parts

    def _decode_all(parts: list[tuple[str, bytes]]) -> list[np.ndarray]:
        from pyimgano.images import decode_image

        images = []
        for i, (name, data) in enumerate(parts):
            try:
                images.append(decode_image(data, name if name == f"image {i}" else f"image {i} ({name})"))
            except ImageTooLarge as exc:
                raise RequestFailed(413, "too_large", str(exc)) from None
            except ImageLoadError as exc:
                raise RequestFailed(400, "bad_image", str(exc)) from None
        return images

    def _answer(scored: Any, images: list[np.ndarray], names: list[str], want_maps: bool) -> dict[str, Any]:
        output, items = scored.output, []
        for i, image in enumerate(images):
            k = scored.start + i
            item = {"name": names[i], "height": int(image.shape[0]), "width": int(image.shape[1]),
                    **image_record(pipe, output, k)}
            if want_maps:
                amap = None if output.maps is None else output.maps[k]
                mask = None if output.masks is None else output.masks[k]
                item["heatmap_png"] = None if amap is None else base64.b64encode(pictures.heatmap(image, amap)).decode()
                item["mask_png"] = None if mask is None else base64.b64encode(pictures.mask(mask)).decode()
            items.append(item)
        return {"detector": pipe.traits.name, "batch_images": scored.batch_images, "images": items}

    return app


_BEARER = HTTPBearer(auto_error=False, description="the API key as a bearer token")
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


async def authorised(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
                     key: Annotated[str | None, Security(_KEY_HEADER)]) -> None:
    """The API key check (a no-op without a key): constant-time comparison."""
    expected = request.app.state.api_key
    if expected is None:
        return
    given = key if key is not None else (credentials.credentials if credentials is not None else None)
    if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                expected.encode("utf-8", "surrogateescape")):
        raise RequestFailed(401, "unauthorised", "missing or wrong API key (Authorization: Bearer KEY or "
                            "X-API-Key: KEY)", {"WWW-Authenticate": "Bearer"})


class _CountRequests:
    """Counts every answer by route and status code (plain ASGI: leaves ``receive`` alone,
    so a handler still sees its client disconnect)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: dict[str, int] = {}

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route, str(status.get("code", 500))).inc()


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
