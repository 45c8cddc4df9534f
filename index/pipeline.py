"""Reading and splitting run on a thread of their own, ahead of the model.

While the model embeds one chunk of sentences (torch and onnxruntime release the GIL while
they compute), the next articles are read, parsed (HTML extraction is the slow part) and
split. The queue between the two is bounded, so a corpus of any size streams through in
bounded memory: the reader waits while the model is behind.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from sift.index.records import Article, Failure, Sentence
from sift.index.split import split_sentences

#: Articles read ahead of the model at most.
DEPTH = 64


@dataclass(frozen=True)
class Prepared:
    """An article with its sentences (None for a Failure, or where it is still to split) and,
    when they were embedded elsewhere (index.cluster), their vectors: unit rows, one a sentence."""

    item: Article | Failure
    sentences: list[Sentence] | None
    vectors: np.ndarray | None = None


@dataclass(frozen=True)
class _Raised:
    error: BaseException


_DONE = object()


def read_ahead(
    items: Iterable[Article | Failure | Prepared], depth: int = DEPTH
) -> Iterator[Prepared]:
    """`items`, each with its sentences, prepared on a background thread (items already
    prepared pass as they are). An error raised while reading is raised here, where the caller
    iterates; closing the iterator stops the reader."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(thing: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(thing, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not isinstance(item, Prepared):
                    text = item.text if isinstance(item, Article) else None
                    item = Prepared(item, split_sentences(text) if text is not None else None)
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Raised(error))

    thread = threading.Thread(target=produce, name="sift-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            got = ready.get()
            if got is _DONE:
                return
            if isinstance(got, _Raised):
                raise got.error
            assert isinstance(got, Prepared)
            yield got
    finally:
        stop.set()
        thread.join()
