"""What the vector index is, by size: exact below a threshold, IVF with exact re-scoring above.

Exact (`flat`): IndexIDMap2 over IndexFlatIP, 1,536 B of RAM per sentence and a full scan per
query (14-30 ms per 100k sentences on one core of the 2-core dev machine, by its load): right
while the index is small.

Approximate (`ivf`): IVF with 4-bit PQ fast-scan codes, whose ids are the sentence ids (an IVF
adds, and removes, by id itself): 58 B per sentence on disk and about 64 B in RAM at 1M. Its
candidates are re-scored exactly from the float32 vectors SQLite already holds, so the order
returned is the exact one over those candidates and the RAM holds no full-precision copy.
HNSW was ruled out because it cannot remove ids, and re-indexing an article removes its old
sentences; SQ8 codes (394 B per sentence) because, probing as many lists, they scanned 30x
slower (16 vs 0.5 ms at 64 of 1024 lists) for recall@10 0.950 against 0.933, in 7x the RAM.

The constants below say what measurement chose them (bench/recall.py, bench/exact_vs_ivf.py);
the parameters an index was built with are written into its manifest (`VectorsInfo`).
"""

from __future__ import annotations

import math
import sqlite3

import faiss
import numpy as np
from sift.index.manifest import VectorsInfo, now_iso

# faiss-cpu 1.15 computes distances with BLAS only from 128,000 queries on: batched exact
# search, k-means training and IVF assignment are then ~10x slower than they should be.
faiss.cvar.distance_compute_blas_threshold = 16

#: How a sentence's vector is stored: int8, scaled by its largest component, after that scale
#: as float32: 388 B at 384 dimensions, a quarter of float32. Re-scoring from it moves a cosine
#: by 0.0003 on average (0.0025 at most) and keeps 99.8 % of an exact top 10 (BBC News vectors
#: against 200 near-duplicate queries); float16 (768 B) kept all of it, but an archive of 1M
#: sentences could not stay within 1,200 B a sentence on disk with it.
SCALE_BYTES = 4


def encode_vector(vector: np.ndarray) -> bytes:
    v = np.asarray(vector, dtype=np.float32)
    scale = np.float32(max(float(np.abs(v).max()), 1e-12) / 127.0)
    codes = np.clip(np.rint(v / scale), -127, 127).astype(np.int8)
    return scale.tobytes() + codes.tobytes()


def decode_vectors(blobs: list[bytes], dimension: int) -> np.ndarray:
    """float32 rows from stored blobs (int8 with a scale; float32 in an index of format 1)."""
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    raw = b"".join(blobs)
    if len(raw) == len(blobs) * dimension * 4:  # format 1, before its upgrade
        return np.frombuffer(raw, dtype=np.float32).reshape(len(blobs), dimension).copy()
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(len(blobs), SCALE_BYTES + dimension)
    scales = rows[:, :SCALE_BYTES].copy().view(np.float32)
    return rows[:, SCALE_BYTES:].view(np.int8).astype(np.float32) * scales


def vector_bytes(dimension: int) -> int:
    """The length of one stored vector."""
    return SCALE_BYTES + dimension


FLAT = "flat"
IVF = "ivf"


def single_threaded() -> None:
    """faiss in the calling thread on one OpenMP thread. On a busy machine OpenMP teams wait
    on one another: rebuilding the 100k-sentence IVF took 29.5 s with two threads and 1.9 s
    with one on the 2-core dev machine. A server's parallelism comes from its requests."""
    faiss.omp_set_num_threads(1)  # per thread: cheap to set on every call


#: Sentences up to which the index stays exact (flat); above it an IVF pays. Measured on this
#: project's 2-core dev machine (bench/exact_vs_ivf.py): exact search takes 7 ms a query at
#: 50k sentences, 18 ms at 100k, 26 ms at 200k; the IVF 1.6-1.9 ms, recall@10 0.95-0.96.
EXACT_MAX = 50_000
#: An IVF is retrained once it holds this many times the sentences it was trained on.
GROWTH = 2.0
#: IVF: the share of lists searched per query (at least NPROBE_MIN of them), and the
#: candidates re-scored exactly. On 1M sentences (bench/recall.py --sweep, IVF1024): nprobe
#: 128 with 400 re-scored gives recall@10 0.953 (news titles 1.0, SQuAD questions 0.905);
#: 64 and 400: 0.933; 128 and 200: 0.923; 256 and 400: 0.962 for twice the scan. Smaller
#: indexes need a larger share: 64 of 256 lists give 0.954-0.961 at 50k-100k.
PROBE_SHARE = 8
NPROBE_MIN = 64
RESCORE = 400
#: Training vectors per IVF list (faiss asks at least 39).
TRAIN_PER_LIST = 64
#: A filter letting through no more sentences than an IVF search re-scores anyway is answered
#: exactly from their stored vectors, without the IVF.
EXACT_AMONG = RESCORE
_SEED = 1234


# -- choosing --------------------------------------------------------------------------------


def kind_of(index: faiss.Index) -> str:
    return IVF if faiss.try_extract_index_ivf(index) is not None else FLAT


def nlist_for(n: int) -> int:
    """A power of two near sqrt(n), with enough vectors per list to train on."""
    by_size = 2 ** round(math.log2(max(math.sqrt(n), 1)))
    return max(1, min(by_size, n // TRAIN_PER_LIST, 65_536))


def nprobe_for(nlist: int) -> int:
    return min(nlist, max(NPROBE_MIN, nlist // PROBE_SHARE))


def quantizer_for(dimension: int) -> str:
    # 4 dimensions per 4-bit code: 48 B per vector at 384 dimensions.
    return f"PQ{dimension // 4}x4fs" if dimension % 8 == 0 else "SQ8"


def plan(n: int, dimension: int, threshold: int = EXACT_MAX) -> VectorsInfo:
    """The vector index `n` sentences should have."""
    if n <= threshold or nlist_for(n) < 2:
        return VectorsInfo(type=FLAT, factory="IDMap2,Flat", threshold=threshold, built=now_iso())
    nlist = nlist_for(n)
    quantizer = quantizer_for(dimension)
    return VectorsInfo(
        type=IVF,
        factory=f"IVF{nlist},{quantizer}",
        nlist=nlist,
        nprobe=nprobe_for(nlist),
        quantizer=quantizer,
        rescore=RESCORE,
        trained_on=n,
        train_sample=min(n, nlist * TRAIN_PER_LIST),
        threshold=threshold,
        built=now_iso(),
    )


def why_rebuild(n: int, info: VectorsInfo, threshold: int) -> str | None:
    """Why an index of the kind `info` describes no longer suits `n` sentences, or None."""
    if info.type == FLAT:
        if n > threshold:
            return f"{n:,} sentences exceed the exact threshold {threshold:,}"
        return None
    if n <= threshold // 2:
        return f"{n:,} sentences: back to exact below half the threshold {threshold:,}"
    trained = max(info.trained_on or 0, 1)
    if n > GROWTH * trained or n * GROWTH < trained:
        return f"{n:,} sentences, trained on {trained:,}: retrain"
    return None


# -- building --------------------------------------------------------------------------------


def new_flat(dimension: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def build(
    conn: sqlite3.Connection, dimension: int, info: VectorsInfo, up_to: int | None = None
) -> faiss.Index:
    """The index `info` describes, over every stored vector (an IVF trained on a sample); with
    `up_to`, over those of sentences up to that id only."""
    single_threaded()
    sample = _training_sample(conn, dimension, info.train_sample or 0) if info.type == IVF else None
    if sample is None or len(sample) < (info.nlist or 0) or not info.factory:
        index = new_flat(dimension)  # also what an IVF shrunk below its lists falls back to
    else:
        index = faiss.index_factory(dimension, info.factory, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        faiss.extract_index_ivf(index).nprobe = info.nprobe or nprobe_for(info.nlist or 1)
    cursor = conn.execute(
        "SELECT id, vector FROM sentences WHERE id <= ? ORDER BY id",
        (up_to if up_to is not None else 2**62,),
    )
    while rows := cursor.fetchmany(50_000):
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        index.add_with_ids(decode_vectors([r[1] for r in rows], dimension), ids)
    return index


def _training_sample(conn: sqlite3.Connection, dimension: int, size: int) -> np.ndarray:
    ids = np.fromiter((r[0] for r in conn.execute("SELECT id FROM sentences")), dtype=np.int64)
    if size < len(ids):
        ids = np.sort(np.random.default_rng(_SEED).choice(ids, size, replace=False))
    _, vectors = stored_vectors(conn, ids, dimension)
    return vectors


# -- searching -------------------------------------------------------------------------------


def stored_vectors(
    conn: sqlite3.Connection, ids: np.ndarray, dimension: int
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 vectors SQLite holds for `ids`: (the ids found, their vectors)."""
    found: list[int] = []
    blobs: list[bytes] = []
    for i in range(0, len(ids), 900):  # SQLite caps the parameters of one statement
        chunk = [int(x) for x in ids[i : i + 900]]
        sql = f"SELECT id, vector FROM sentences WHERE id IN ({','.join('?' * len(chunk))})"
        for sid, blob in conn.execute(sql, chunk):
            found.append(sid)
            blobs.append(blob)
    return np.asarray(found, dtype=np.int64), decode_vectors(blobs, dimension)


def nearest(
    index: faiss.Index,
    info: VectorsInfo,
    conn: sqlite3.Connection,
    query: np.ndarray,
    n: int,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and ids of the `n` stored sentences nearest `query`, best first; only those in
    `allowed` when given. Exact on a flat index; on an IVF, exact over its candidates."""
    single_threaded()
    query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    limit = index.ntotal if allowed is None else min(len(allowed), index.ntotal)
    n = min(n, limit)
    if n <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        params = None if allowed is None else faiss.SearchParameters(sel=_selector(allowed))
        return _found(*index.search(query, n, params=params))
    if allowed is not None and len(allowed) <= max(EXACT_AMONG, n):
        return _exact(conn, np.unique(allowed), query, n)
    nprobe = info.nprobe or ivf.nprobe
    selector = None
    if allowed is not None:
        # A filter passing a share of the index finds that share of candidates per list:
        # probe more lists so that as many candidates come back as without it.
        nprobe = math.ceil(nprobe * index.ntotal / len(allowed))
        selector = _selector(allowed)
    params = faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe, ivf.nlist))
    depth = min(max(n, info.rescore or RESCORE), limit)
    _, candidates = _found(*index.search(query, depth, params=params))
    return _exact(conn, candidates, query, n)


def _selector(allowed: np.ndarray) -> faiss.IDSelector:
    return faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))


def _found(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = ids[0] >= 0
    return scores[0][keep], ids[0][keep]


def _exact(
    conn: sqlite3.Connection, candidates: np.ndarray, query: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best `n` candidates by their exact score, ties by id. Candidates whose rows a newer
    commit removed are not found, and drop out."""
    ids, vectors = stored_vectors(conn, candidates, query.shape[1])
    scores = vectors @ query[0]
    order = np.lexsort((ids, -scores))[:n]
    return scores[order], ids[order]
