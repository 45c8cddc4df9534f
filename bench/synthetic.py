"""Large synthetic indexes for the benchmarks, made from real BBC News sentences, cached in /tmp.

How an index of N sentences is made (`build(N)`):

1. The real BBC News corpus (2,225 articles, ~40.6k sentences) is indexed once with
   `sift index` (default model all-MiniLM-L6-v2, default precision) into CACHE/bbc.
2. Its articles are copied, in order and over again, until N sentences are reached; copy c of
   article A is the article `A~c`: the same title, text, sentences and offsets, source "bbc",
   a published date spread over 2020-2024, and each sentence's vector is A's real embedding plus
   gaussian noise, renormalised: v' = (v + e) / |v + e|, e ~ N(0, 0.025^2 I); |e| ~ 0.49, so a
   copy has cosine ~0.89 with its original and ~0.80 with another copy of it.
3. Rows go into the real schema (index.store.SCHEMA) in one transaction: articles, and
   sentences with their vectors (int8, as a writer stores them); the keyword index
   (tantivy) is built from those rows as any writer rebuilds it
   (index.keyword_index.KeywordWriter); then the vector
   index the size calls for (index.vectors.plan, the default exact threshold) is built and
   saved as generation 1 with its manifest, exactly as `sift optimize` would.

    .venv/bin/python bench/synthetic.py 1000000     # prints the index directory
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import need_eval
from sift.index.keyword_index import KeywordWriter
from sift.index.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    Counts,
    manifest_json,
    write_json_atomically,
)
from sift.index.store import SCHEMA, connect, read_manifest, save_vectors
from sift.index.vectors import build as build_vectors
from sift.index.vectors import decode_vectors, encode_vector, plan

CACHE = Path(os.environ.get("SIFT_BENCH_CACHE", "/tmp/sift-bench"))
NOISE = 0.025
_SEED = 7


def bbc_index() -> Path:
    """The real BBC News index, built once with `sift index`."""
    directory = CACHE / "bbc"
    if not (directory / MANIFEST_FILE).exists():
        from sift.search.engine import Sift
        from sift.settings import Settings

        corpus = CACHE / "bbc.jsonl"
        corpus.parent.mkdir(parents=True, exist_ok=True)
        import gzip

        with gzip.open(need_eval("bbc_news", "bbc_news.jsonl.gz"), "rb") as handle:
            corpus.write_bytes(handle.read())
        Sift(Settings(index=directory)).index_paths([corpus])
    return directory


def build(size: int) -> Path:
    """The synthetic index of `size` sentences (built on first use, then reused)."""
    directory = CACHE / f"synthetic-{size}"
    if (directory / MANIFEST_FILE).exists():
        return directory
    started = time.perf_counter()
    source = connect(bbc_index())
    manifest = read_manifest(source)
    assert manifest is not None
    articles = source.execute(
        "SELECT id, title, text, url, metadata FROM articles "
        "WHERE duplicate_of IS NULL ORDER BY num"
    ).fetchall()
    sentences: dict[str, list[tuple]] = {}  # type: ignore[type-arg]
    for row in source.execute(
        'SELECT article_id, position, start, "end", text, vector FROM sentences '
        "ORDER BY article_id, position"
    ):
        sentences.setdefault(row[0], []).append(row[1:])
    source.close()

    tmp = directory.with_name(directory.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    for stale in tmp.iterdir():
        stale.unlink()
    conn = connect(tmp, create=True)
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(SCHEMA)
    rng = np.random.default_rng(_SEED)
    sid, copy, n_articles = 1, 0, 0
    conn.execute("BEGIN")
    while sid <= size:
        for art_id, title, text, url, metadata in articles:
            rows = sentences.get(art_id)
            if not rows or sid > size:
                continue
            rows = rows[: size - sid + 1]
            new_id = f"{art_id}~{copy}"
            digest = hashlib.sha256(f"{new_id}\n{text}".encode()).hexdigest()
            published = (date(2020, 1, 1) + timedelta(days=n_articles % 1826)).isoformat()
            conn.execute(
                "INSERT INTO articles (id, title, text, url, source, published, metadata, "
                "content_hash, text_hash, added, updated) "
                "VALUES (?, ?, ?, ?, 'bbc', ?, ?, ?, ?, datetime('now'), datetime('now'))",
                (new_id, title, text, url, published, metadata, digest, digest),
            )
            vectors = decode_vectors([r[4] for r in rows], manifest.model.dimension)
            vectors = vectors + rng.normal(0, NOISE, (len(rows), manifest.model.dimension)).astype(
                np.float32
            )
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            ids = range(sid, sid + len(rows))
            conn.executemany(
                'INSERT INTO sentences (id, article_id, position, start, "end", text, vector) '
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (i, new_id, *r[:4], encode_vector(v))
                    for i, r, v in zip(ids, rows, vectors, strict=True)
                ],
            )
            sid += len(rows)
            n_articles += 1
        copy += 1
    info = plan(size, manifest.model.dimension)
    vectors = build_vectors(conn, manifest.model.dimension, info)
    manifest = manifest.model_copy(
        update={
            "counts": Counts(articles=n_articles, sentences=size),
            "generation": 1,
            "format_version": FORMAT_VERSION,
            "vectors": info.model_copy(update={"file": "vectors.1.faiss", "covers": size}),
        }
    )
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('manifest', ?), ('next_sentence_id', ?)",
        (manifest.model_dump_json(), str(size + 1)),
    )
    conn.execute("DELETE FROM keyword_changes")  # the keyword index is built from every row
    conn.execute("COMMIT")
    keyword = KeywordWriter(tmp, threads=2)
    keyword.sync(conn, 1, replay=True)
    keyword.close()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    save_vectors(tmp, vectors, "vectors.1.faiss")
    write_json_atomically(tmp / MANIFEST_FILE, manifest_json(manifest))
    tmp.rename(directory)
    print(
        json.dumps({"built": str(directory), "seconds": round(time.perf_counter() - started)}),
        file=sys.stderr,
    )
    return directory


if __name__ == "__main__":
    print(build(int(sys.argv[1])))
