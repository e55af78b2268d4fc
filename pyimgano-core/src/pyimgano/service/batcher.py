"""Concurrent requests scored together, on one worker thread, by one loaded model.

Each request hands its decoded images to :meth:`Batcher.submit` and awaits a future. The
worker takes the oldest request, waits up to ``window_s`` for more (until ``max_batch``
images), drops the requests whose client gave up meanwhile (timed out or disconnected: they
cost nothing more), scores the rest in one :meth:`Pipeline.predict` call and answers each
from its slice of the output. The queue is bounded in images: beyond ``max_queue`` a request
is refused at once (:class:`Busy`), so a burst never grows memory without limit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyimgano.errors import PyimganoError


class Busy(PyimganoError, RuntimeError):
    """The queue holds ``max_queue`` images already; the client should retry later."""


@dataclass(frozen=True)
class Scored:
    """A request's share of a batch: ``output`` (the batch's PipelineOutput) from ``start``."""

    output: Any
    start: int
    batch_images: int


@dataclass
class _Job:
    images: list[Any]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class Batcher:
    """Gathers the images of concurrent requests into batches for ``predict``.

    ``on_batch(n_images, seconds)`` is called from the worker after each batch (metrics).
    """

    def __init__(self, predict: Callable[[list[Any]], Any], *, max_batch: int, window_s: float, max_queue: int,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.predict = predict
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._queued_images = 0
        self._thread = threading.Thread(target=self._work, name="pyimgano-batcher", daemon=True)
        self._carry: _Job | None = None

    @property
    def queued_images(self) -> int:
        return self._queued_images

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the worker."""
        self._queue.put(None)
        self._thread.join(timeout)

    async def submit(self, images: list[Any]) -> Scored:
        """Score ``images`` in the next batch; cancelling the await withdraws them if not yet scored."""
        with self._lock:
            if self._queued_images + len(images) > self.max_queue and self._queued_images:
                raise Busy(f"{self._queued_images} image(s) are waiting to be scored (--max-queue "
                           f"{self.max_queue}); retry later")
            self._queued_images += len(images)
        loop = asyncio.get_running_loop()
        job = _Job(images, loop.create_future(), loop)
        self._queue.put(job)
        return await job.future

    # -- the worker -------------------------------------------------------------------------
    def _next(self, timeout: float | None) -> _Job | None:
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        return self._queue.get(timeout=timeout) if timeout is not None else self._queue.get()

    def _work(self) -> None:
        stopping = False
        while not stopping or self._carry is not None:
            first = self._next(None)
            if first is None:
                break
            batch, n = [first], len(first.images)
            deadline = time.monotonic() + self.window_s
            while n < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    job = self._next(max(remaining, 0.0)) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                if n + len(job.images) > self.max_batch:
                    self._carry = job
                    break
                batch.append(job)
                n += len(job.images)
            self._score(batch)

    def _release(self, jobs: list[_Job]) -> None:
        with self._lock:
            self._queued_images -= sum(len(j.images) for j in jobs)

    def _score(self, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.future.cancelled()]
        self._release(batch)
        if not live:
            return
        images = [image for job in live for image in job.images]
        started = time.perf_counter()
        try:
            output = self.predict(images)
        except BaseException as exc:  # noqa: BLE001 - handed to each waiting request
            for job in live:
                job.loop.call_soon_threadsafe(_settle, job.future, None, exc)
            return
        if self.on_batch is not None:
            self.on_batch(len(images), time.perf_counter() - started)
        start = 0
        for job in live:
            job.loop.call_soon_threadsafe(_settle, job.future, Scored(output, start, len(images)), None)
            start += len(job.images)


def _settle(future: asyncio.Future, value: Any, exc: BaseException | None) -> None:
    if future.done():  # the client gave up while its batch was scored
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
