"""Micro-batching: concurrent API searches share one model call.

Searches queue in the event loop. A worker takes everything queued (up to `max_batch`) and
answers it with one `Sift.search_batch` call in a worker thread, so neither the model nor FAISS
holds the event loop. Alone, a search waits for nothing; under load, the searches that arrive
while a batch runs make up the next one, so batches grow with concurrency and so does the
throughput. A request the engine refuses fails alone: its batch is then answered one by one.

One batch runs at a time (`workers`) while the next one gathers. Measured on the 2-core dev
machine with the torch encoder, 1M sentences, dense, concurrency 16: 140 queries/s with one
batch at a time, 116 with two, 98 with four, 84 without batching. torch runs on one thread in
the server (`torch_threads`): on a busy machine a torch call spread over two cores waited at every
layer for the slower one (5 ms on one thread, 10-500 ms on two while other processes ran). The
ONNX encoder runs on `query_threads` (unset: every core), which measured better for it: p50
8.4 ms alone and 145 queries/s at concurrency 16 on two threads, 11.1 ms and 131 on one.
"""

from __future__ import annotations

import asyncio
from collections import deque

from sift.search.engine import Sift
from sift.search.results import SearchRequest, SearchResponse
from starlette.concurrency import run_in_threadpool

_Item = tuple[SearchRequest, "asyncio.Future[SearchResponse]"]


class SearchBatcher:
    """Batches the searches of one event loop for one engine."""

    def __init__(
        self,
        engine: Sift,
        max_batch: int = 32,
        workers: int = 1,
        wait_ms: float = 0.0,
    ):
        self.engine = engine
        self.max_batch = max_batch
        self.workers = workers  # batches in flight at once
        self.wait_ms = wait_ms  # > 0: a worker waits this long for a batch to fill
        self._queue: deque[_Item] = deque()
        self._running = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def search(self, request: SearchRequest) -> SearchResponse:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a restarted server, a new test client)
            self._loop, self._queue, self._running = loop, deque(), 0
        future: asyncio.Future[SearchResponse] = loop.create_future()
        self._queue.append((request, future))
        if self._running < self.workers:
            self._running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        """Answer batches until the queue is empty, then stop: no task outlives the load."""
        loop = self._loop
        try:
            while self._queue:
                if self.wait_ms > 0 and len(self._queue) < self.max_batch:
                    await asyncio.sleep(self.wait_ms / 1000)
                size = min(self.max_batch, len(self._queue))
                batch = [self._queue.popleft() for _ in range(size)]
                batch = [item for item in batch if not item[1].done()]  # the client went away
                if batch:
                    results = await run_in_threadpool(self._answer, [r for r, _ in batch])
                    for (_, future), result in zip(batch, results, strict=True):
                        if future.done():
                            continue
                        if isinstance(result, BaseException):
                            future.set_exception(result)
                        else:
                            future.set_result(result)
        finally:
            if self._loop is loop:
                self._running -= 1

    def _answer(self, requests: list[SearchRequest]) -> list[SearchResponse | BaseException]:
        try:
            return list(self.engine.search_batch(requests))
        except Exception as exc:
            if len(requests) == 1:
                return [exc]
        results: list[SearchResponse | BaseException] = []
        for request in requests:
            try:
                results.append(self.engine.search(request))
            except Exception as exc:
                results.append(exc)
        return results
