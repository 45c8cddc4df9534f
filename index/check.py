"""`sift check`: verify that an index is whole and self-consistent; repair what can be rebuilt
from the stored article text."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np
from sift.errors import StoreError, WriterBusy
from sift.index.embed import Embedder
from sift.index.keyword_index import KeywordIndex, keyword_generation
from sift.index.lock import acquire_write_lock, writer_busy
from sift.index.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    Manifest,
    manifest_json,
    write_json_atomically,
)
from sift.index.store import (
    BAD_VECTOR_SQL,
    MISMATCHED_SENTENCES_SQL,
    POSITION_GAPS_SQL,
    UNSPLIT_ARTICLES_SQL,
    connect,
    read_manifest,
    stored_manifest,
)
from sift.index.upkeep import bring_up_to_date
from sift.index.vectors import vector_bytes


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an index, in words, and whether --repair can mend it."""

    code: str
    detail: str
    repairable: bool = True


@dataclass
class CheckReport:
    index: str
    ok: bool
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)
    moved: bool = field(default=False, repr=False)  # a writer was at work during the look

    def as_dict(self) -> dict[str, object]:
        report = asdict(self)
        del report["moved"]
        return report


def vector_ids(index: faiss.Index) -> np.ndarray:
    """The ids a FAISS index holds, whatever its kind."""
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        lists = ivf.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(ivf.nlist)
            if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    raise StoreError(f"cannot list the ids of a {type(index).__name__}")


#: Looks at a live index before the last, which holds the write lock. Each look reads one
#: committed state of the database, but the keyword index, manifest.json and the vectors base
#: follow a commit or a merge a moment later: a look that finds a problem while the index
#: moved under it may have seen a commit in flight, and looks again.
UNLOCKED_LOOKS = 3
#: Seconds the last look waits for the write lock. While it holds the lock, writers wait for
#: it up to their own `write_wait` (30 s in a server, none in a command), then fail as busy:
#: it is taken only after looks that each found problems while the index moved.
LOCK_WAIT = 120.0


def check_index(directory: Path, embedder: Embedder | None = None) -> CheckReport:
    """Every check there is; the report lists what is wrong, exactly. On an index that writers
    and merges keep changing, a problem counts only if it is there in a look during which
    nothing moved, or in a last look that holds the write lock."""
    report = _look(directory, embedder)
    for _ in range(UNLOCKED_LOOKS - 1):
        if report.ok or not report.moved:
            return report
        report = _look(directory, embedder)
    if report.ok or not report.moved:
        return report
    try:
        lock = acquire_write_lock(directory, LOCK_WAIT)
    except WriterBusy:
        report.problems.append(
            Problem(
                "busy",
                f"writes went on through {UNLOCKED_LOOKS} looks and {LOCK_WAIT:g} s of waiting: "
                "the problems above may be commits in flight; check again when writes pause",
                repairable=False,
            )
        )
        return report
    try:
        return _look(directory, embedder, locked=True)
    finally:
        lock.release()


def _look(directory: Path, embedder: Embedder | None, locked: bool = False) -> CheckReport:
    """One look: the database read in one transaction, the files beside it as they are."""
    busy = not locked and writer_busy(directory)
    before = _generation(directory)
    report = _look_once(directory, embedder, locked)
    busy = busy or (not locked and writer_busy(directory))
    report.moved = busy or before != _generation(directory)
    return report


def _generation(directory: Path) -> int | None:
    try:
        manifest = stored_manifest(directory)
    except StoreError:
        return None
    return manifest.generation if manifest else None


def _look_once(directory: Path, embedder: Embedder | None, locked: bool) -> CheckReport:
    report = CheckReport(index=str(directory), ok=True)
    problems = report.problems
    try:
        conn = connect(directory)
    except StoreError as exc:
        problems.append(Problem("unreadable", str(exc), repairable=False))
        report.ok = False
        return report
    try:
        conn.execute("BEGIN")  # every read below sees one committed state
        _check(directory, conn, embedder, report, locked)
    except sqlite3.DatabaseError as exc:
        problems.append(Problem("database", f"SQLite error: {exc}", repairable=False))
    finally:
        conn.close()
    report.ok = not problems
    return report


def _check(
    directory: Path,
    conn: sqlite3.Connection,
    embedder: Embedder | None,
    report: CheckReport,
    locked: bool,
) -> None:
    problems = report.problems
    say: Callable[..., None] = lambda code, detail, repairable=True: problems.append(  # noqa: E731
        Problem(code, detail, repairable)
    )
    quick = conn.execute("PRAGMA quick_check").fetchall()
    if quick != [("ok",)]:
        say("database", "SQLite quick_check: " + "; ".join(r[0] for r in quick[:5]), False)
        return
    manifest = read_manifest(conn)
    if manifest is None:
        say("manifest", "the database holds no manifest: the index was never committed", False)
        return
    if manifest.format_version > FORMAT_VERSION:
        say("format", f"format version {manifest.format_version} is newer than this sift", False)
        return
    if manifest.format_version < FORMAT_VERSION:
        say(
            "old_format",
            f"format version {manifest.format_version}: --repair (or any write, or sift "
            f"optimize) upgrades it to {FORMAT_VERSION} in place",
        )
        return
    _check_manifest_file(directory, manifest, say, report, locked)
    articles, sentences = conn.execute(
        "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM sentences)"
    ).fetchone()
    report.checked.update(articles=articles, sentences=sentences)
    if (manifest.counts.articles, manifest.counts.sentences) != (articles, sentences):
        say(
            "counts",
            f"manifest counts {manifest.counts.articles} articles, {manifest.counts.sentences} "
            f"sentences; the database holds {articles} and {sentences}",
        )
    ids = np.fromiter((r[0] for r in conn.execute("SELECT id FROM sentences")), dtype=np.int64)
    _check_vectors(directory, conn, manifest, ids, say)
    _check_keyword_index(directory, conn, manifest, ids, say, report.repaired.append, locked)
    _check_rows(conn, manifest.model.dimension, say)
    if embedder is not None and embedder.fingerprint != manifest.model.fingerprint:
        say(
            "model",
            f"index was built with {manifest.model.name} (weights {manifest.model.fingerprint[:12]}"
            f"), the model given is {embedder.name} (weights {embedder.fingerprint[:12]})",
            False,
        )


def _check_manifest_file(
    directory: Path,
    manifest: Manifest,
    say: Callable[..., None],
    report: CheckReport,
    locked: bool,
) -> None:
    path = directory / MANIFEST_FILE
    if _lags_one_commit(path, manifest) and (locked or not writer_busy(directory)):
        # A crash between a commit and rewriting this file: the commit stands, and the file is
        # only its description. Bring it up to date, as the next writer would.
        write_json_atomically(path, manifest_json(manifest))
        report.repaired.append(f"{MANIFEST_FILE} caught up with commit {manifest.generation}")
    if not path.exists():
        say("manifest_file", f"{MANIFEST_FILE} is missing")
    elif path.read_text(encoding="utf-8") != manifest_json(manifest):
        try:
            written = json.loads(path.read_text(encoding="utf-8"))
            truth = manifest.model_dump(mode="json")
            keys = sorted(k for k in set(truth) | set(written) if truth.get(k) != written.get(k))
            detail = f"differs in {', '.join(keys) or 'formatting'}"
            if "generation" in keys:
                detail += f" (generation {written.get('generation')} on file, "
                detail += f"{manifest.generation} committed)"
        except json.JSONDecodeError:
            detail = "it is not valid JSON"
        say("manifest_file", f"{MANIFEST_FILE} disagrees with the database: {detail}")


def _lags_one_commit(path: Path, manifest: Manifest) -> bool:
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(written, dict) and written.get("generation") == manifest.generation - 1


def _check_vectors(
    directory: Path,
    conn: sqlite3.Connection,
    manifest: Manifest,
    ids: np.ndarray,
    say: Callable[..., None],
) -> None:
    """The base file holds every sentence up to `covers` but those removed since (tombstones);
    the sentences after it are read from their rows."""
    name = manifest.vectors.file
    if name is None:
        return  # no base yet: every vector is read from the rows
    path = directory / name
    if not path.exists():
        say("vectors_file", f"{name} (the vectors base of this generation) is missing")
        return
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        say("vectors_file", f"{name} cannot be read: {str(exc).splitlines()[0]}")
        return
    if index.d != manifest.model.dimension:
        say("vectors_dimension", f"{name} has dimension {index.d}, not {manifest.model.dimension}")
    covers = manifest.vectors.covers or 0
    removed = np.fromiter(
        (r[0] for r in conn.execute("SELECT id FROM vector_tombstones")), dtype=np.int64
    )
    held = vector_ids(index)
    live = np.setdiff1d(held, removed)
    expected = ids[ids <= covers]
    missing = np.setdiff1d(expected, live)
    extra = np.setdiff1d(live, expected)
    if len(missing) or len(extra) or len(held) != len(np.unique(held)):
        say(
            "vector_ids",
            f"{len(missing)} sentences have no vector (e.g. {missing[:3].tolist()}), "
            f"{len(extra)} vectors have no sentence (e.g. {extra[:3].tolist()}), "
            f"{len(held) - len(np.unique(held))} vectors are doubled",
        )


def _check_keyword_index(
    directory: Path,
    conn: sqlite3.Connection,
    manifest: Manifest,
    ids: np.ndarray,
    say: Callable[..., None],
    say_repaired: Callable[[str], None],
    locked: bool,
) -> None:
    generation = keyword_generation(directory)
    # A crash between a commit and the keyword index's: the commit stands, and the keyword index
    # is derived from it. Catch it up, as the next writer or reader would.
    lags = generation is not None and generation < manifest.generation
    free = locked or not writer_busy(directory)
    if lags and free and bring_up_to_date(directory, manifest, generation, locked):
        generation = keyword_generation(directory)
        if generation == manifest.generation:
            say_repaired(f"keyword index caught up with commit {generation}")
    if generation != manifest.generation:
        held = "no state" if generation is None else f"generation {generation}"
        say(
            "keyword_generation",
            f"the keyword index reflects {held}, the database generation {manifest.generation}",
        )
    try:
        keyword = KeywordIndex(directory)
        sentences, articles = keyword.held()
    except (StoreError, ValueError, OSError) as exc:
        say("keyword_index", f"the keyword index cannot be read: {str(exc).splitlines()[0]}")
        return
    nums = np.fromiter((r[0] for r in conn.execute("SELECT num FROM articles")), np.int64)
    for what, stored, held_keys in (("sentences", ids, sentences), ("articles", nums, articles)):
        missing, extra = np.setdiff1d(stored, held_keys), np.setdiff1d(held_keys, stored)
        if len(missing) or len(extra):
            say(
                "keyword_ids",
                f"{len(missing)} {what} are not in the keyword index, "
                f"{len(extra)} keyword entries have no row (e.g. {extra[:3].tolist()})",
            )


def _check_rows(conn: sqlite3.Connection, dimension: int, say: Callable[..., None]) -> None:
    bad_vectors = conn.execute(BAD_VECTOR_SQL, (vector_bytes(dimension),)).fetchall()
    if bad_vectors:
        say("vector_rows", f"{len(bad_vectors)} articles hold a vector of the wrong size")
    orphans = conn.execute(
        "SELECT count(*) FROM sentences s LEFT JOIN articles a ON a.id = s.article_id "
        "WHERE a.id IS NULL"
    ).fetchone()[0]
    if orphans:
        say("orphans", f"{orphans} sentences belong to no article")
    offsets = conn.execute(MISMATCHED_SENTENCES_SQL).fetchall()
    if offsets:
        say(
            "offsets",
            f"{len(offsets)} articles have sentences that do not match their text "
            f"(e.g. {offsets[0][0]!r})",
        )
    if gaps := conn.execute(POSITION_GAPS_SQL).fetchall():
        say("positions", f"{len(gaps)} articles have gaps in their sentence positions")
    if unsplit := conn.execute(UNSPLIT_ARTICLES_SQL).fetchall():
        say("no_sentences", f"{len(unsplit)} articles have no sentences")
    dangling = conn.execute(
        "SELECT count(*) FROM articles a LEFT JOIN articles o ON o.id = a.duplicate_of "
        "WHERE a.duplicate_of IS NOT NULL AND (o.id IS NULL OR o.duplicate_of IS NOT NULL)"
    ).fetchone()[0]
    if dangling:
        say("copies", f"{dangling} copies point to an article that does not hold their text", False)
    row = conn.execute("SELECT value FROM meta WHERE key = 'next_sentence_id'").fetchone()
    top = conn.execute("SELECT coalesce(max(id), 0) FROM sentences").fetchone()[0]
    if row is not None and int(row[0]) <= top:
        say("next_id", f"next sentence id {row[0]} is not above the largest id {top}")


def repair_index(directory: Path, embedder: Embedder) -> CheckReport:
    """Rebuild what can be rebuilt from the stored article text, then check again."""
    from sift.index.repair import RepairingWriter  # the writer side; only repair needs it

    before = check_index(directory, embedder)
    codes = {p.code for p in before.problems}
    repaired: list[str] = []
    if not codes:
        return before
    if codes & {"unreadable", "database", "manifest", "format", "model", "busy"}:
        return before  # nothing here can be rebuilt safely (busy: may be commits in flight)
    with RepairingWriter(directory, embedder) as writer:
        if codes & {"offsets", "positions", "vector_rows", "no_sentences"}:
            ids = writer.articles_needing_resplit()
            writer.reembed(ids)
            repaired.append(f"re-split and re-embedded {len(ids)} articles from their text")
        if "orphans" in codes:
            repaired.append(f"removed {writer.drop_orphans()} sentences of no article")
        if codes & {"keyword_ids", "keyword_index", "keyword_generation"}:
            writer.rebuild_keyword_index()
            repaired.append("rebuilt the keyword indexes")
        if codes & {"vectors_file", "vector_ids", "vectors_dimension"}:
            writer.rebuild_vectors()
            repaired.append("rebuilt the vectors from the database")
        writer.force_commit()
        repaired.append("rewrote the manifest and counts")
    after = check_index(directory, embedder)
    after.repaired = repaired
    return after
