"""What an index remembers of the live sources it follows, in two tables of its own sift.db:

- `feed_entries`: each entry seen of each source (feed or sitemap) with its fingerprint (a hash
  of what the source says of it, and its `updated` date) and the validators (ETag,
  Last-Modified) of its page, so that a changed entry is fetched again and an unchanged one never.
- `web_sources`: each URL named to `sift index`/`sift watch` (and each sitemap an index lists)
  with its validators, for conditional requests, and running counts for `sift stats`.

An index written before these columns existed keeps working: reads take what is there, the
first write adds the rest (entries then known without a fingerprint adopt the next one seen,
unfetched)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sift.index.manifest import DATABASE_FILE
from sift.index.store import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_entries (
    feed_url   TEXT NOT NULL,                -- the source named: a feed or a sitemap (index)
    entry_key  TEXT NOT NULL,                -- the entry's guid, else its link
    article_id TEXT NOT NULL,
    seen_at    TEXT NOT NULL,
    PRIMARY KEY (feed_url, entry_key)
);
CREATE TABLE IF NOT EXISTS web_sources (
    url           TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,             -- feed, sitemap, page, unknown (never read)
    parent        TEXT,                      -- the sitemap index that lists this sitemap
    etag          TEXT,
    last_modified TEXT,
    lastmod       TEXT,                      -- as the parent sitemap index gave it
    checked_at    TEXT,
    rounds        INTEGER NOT NULL DEFAULT 0,
    fetched       INTEGER NOT NULL DEFAULT 0,
    not_modified  INTEGER NOT NULL DEFAULT 0,
    robots        INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0
);
"""
#: Columns feed_entries gained after its first version (an index may lack them).
ENTRY_COLUMNS = ("updated", "entry_hash", "etag", "last_modified")
COUNTERS = ("fetched", "not_modified", "robots", "failed")


@dataclass(frozen=True)
class KnownEntry:
    article_id: str
    updated: str | None = None
    entry_hash: str | None = None  # None: remembered before fingerprints were kept
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class EntryRow:
    """An entry to remember: seen, and (when `needs_article`) indexed as `article_id`."""

    source: str
    key: str
    article_id: str
    updated: str | None
    entry_hash: str
    etag: str | None = None
    last_modified: str | None = None
    needs_article: bool = True  # False: nothing was indexed this time (304, or adopted)


@dataclass(frozen=True)
class SourceRow:
    """A source or a sitemap it lists, as one run leaves it."""

    url: str
    kind: str
    parent: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    lastmod: str | None = None


@dataclass(frozen=True)
class KnownSource:
    kind: str
    etag: str | None
    last_modified: str | None
    lastmod: str | None


@dataclass(frozen=True)
class SourceStats:
    """A named source over all runs: for `sift stats`."""

    url: str
    kind: str
    entries: int
    rounds: int
    fetched: int
    not_modified: int
    robots: int
    failed: int
    checked_at: str | None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


class FeedState:
    """The live-source tables of the index in `directory`."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _connect(self) -> sqlite3.Connection | None:
        if not (self.directory / DATABASE_FILE).exists():
            return None  # no index yet: nothing seen
        return connect(self.directory)

    # -- reading (never writes: `sift stats` reads an index it must not change) --------------

    def entries(self, source: str) -> dict[str, KnownEntry]:
        """The entries of `source` seen by earlier runs, by key."""
        conn = self._connect()
        if conn is None:
            return {}
        try:
            columns = _columns(conn, "feed_entries")
            if not columns:
                return {}
            extra = ", ".join(c if c in columns else f"NULL AS {c}" for c in ENTRY_COLUMNS)
            rows = conn.execute(
                f"SELECT entry_key, article_id, {extra} FROM feed_entries WHERE feed_url = ?",
                (source,),
            ).fetchall()
            return {key: KnownEntry(article_id, *rest) for key, article_id, *rest in rows}
        finally:
            conn.close()

    def source(self, url: str) -> KnownSource | None:
        conn = self._connect()
        if conn is None:
            return None
        try:
            if not _columns(conn, "web_sources"):
                return None
            row = conn.execute(
                "SELECT kind, etag, last_modified, lastmod FROM web_sources WHERE url = ?", (url,)
            ).fetchone()
            return KnownSource(*row) if row else None
        finally:
            conn.close()

    def present(self, article_ids: Iterable[str]) -> set[str]:
        """Those of `article_ids` the index holds (a user may have removed some)."""
        ids = list(dict.fromkeys(article_ids))
        conn = self._connect()
        if conn is None or not ids:
            return set()
        try:
            found: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT id FROM articles WHERE id IN ({marks})", chunk)
                found.update(row[0] for row in rows)
            return found
        finally:
            conn.close()

    def counts(self) -> dict[str, int]:
        """Entries seen, by source URL."""
        conn = self._connect()
        if conn is None:
            return {}
        try:
            if not _columns(conn, "feed_entries"):
                return {}
            rows = conn.execute("SELECT feed_url, count(*) FROM feed_entries GROUP BY feed_url")
            return {url: n for url, n in rows}
        finally:
            conn.close()

    def stats(self) -> list[SourceStats]:
        """Every feed and sitemap followed (and every source never readable), over all runs.
        A feed followed before `web_sources` existed shows its entries and nothing else."""
        counts = self.counts()
        conn = self._connect()
        if conn is None:
            return []
        try:
            rows = []
            if _columns(conn, "web_sources"):
                rows = conn.execute(
                    "SELECT url, kind, rounds, fetched, not_modified, robots, failed, checked_at "
                    "FROM web_sources WHERE parent IS NULL AND kind != 'page' ORDER BY url"
                ).fetchall()
        finally:
            conn.close()
        stats = {
            url: SourceStats(url, kind, counts.get(url, 0), *numbers, checked)
            for url, kind, *numbers, checked in rows
        }
        for url, n in counts.items():
            stats.setdefault(url, SourceStats(url, "feed", n, 0, 0, 0, 0, 0, None))
        return [stats[url] for url in sorted(stats)]

    # -- writing (after the run's articles are committed) ------------------------------------

    def record(
        self,
        entries: Iterable[EntryRow],
        sources: Iterable[SourceRow],
        counters: dict[str, dict[str, int]],
    ) -> int:
        """Remember entries, sources' validators, and add one round's `counters` (by source
        URL: fetched, not_modified, robots, failed) to the running counts. The index must
        exist. Returns how many entries were remembered."""
        entries, sources = list(entries), list(sources)
        if not (entries or sources or counters):
            return 0
        conn = connect(self.directory)
        try:
            migrate(conn)
            now = _now()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR REPLACE INTO feed_entries (feed_url, entry_key, article_id, seen_at, "
                "updated, entry_hash, etag, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.source,
                        e.key,
                        e.article_id,
                        now,
                        e.updated,
                        e.entry_hash,
                        e.etag,
                        e.last_modified,
                    )
                    for e in entries
                ],
            )
            conn.executemany(
                "INSERT INTO web_sources (url, kind, parent, etag, last_modified, lastmod, "
                "checked_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET "
                "kind = excluded.kind, parent = excluded.parent, etag = excluded.etag, "
                "last_modified = excluded.last_modified, lastmod = excluded.lastmod, "
                "checked_at = excluded.checked_at",
                [
                    (s.url, s.kind, s.parent, s.etag, s.last_modified, s.lastmod, now)
                    for s in sources
                ],
            )
            for url, numbers in counters.items():
                conn.execute(
                    "INSERT INTO web_sources (url, kind, checked_at) VALUES (?, 'unknown', ?) "
                    "ON CONFLICT (url) DO NOTHING",
                    (url, now),
                )
                conn.execute(
                    "UPDATE web_sources SET rounds = rounds + 1, "
                    + ", ".join(f"{c} = {c} + ?" for c in COUNTERS)
                    + " WHERE url = ?",
                    (*(numbers.get(c, 0) for c in COUNTERS), url),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        return sum(1 for e in entries if e.needs_article)


def migrate(conn: sqlite3.Connection) -> None:
    """Create the tables, and add the columns an older feed_entries lacks."""
    conn.executescript(SCHEMA)
    have = _columns(conn, "feed_entries")
    for column in ENTRY_COLUMNS:
        if column not in have:
            try:
                conn.execute(f"ALTER TABLE feed_entries ADD COLUMN {column} TEXT")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
