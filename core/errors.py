"""Every failure sift knows about, in one table.

Each class carries a stable `code` (the API's `error` field, for programs), the exit status the CLI
ends with, and the HTTP status the API answers with. The CLI (`sift.cli.common.errors_to_exit`)
and the API (`sift.api.errors.install`) each map `SiftError` in one place, so a new failure is a
new class here and nothing else. Messages are written for the person who has to act on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "ClusterUnavailable",
    "ConfigError",
    "DiskFull",
    "EncoderUnavailable",
    "FeedError",
    "FetchError",
    "IndexNotFound",
    "InputError",
    "InvalidRequest",
    "ModelError",
    "ModelMismatch",
    "NotFound",
    "QueryHasOnlyExclusions",
    "ReadOnly",
    "RobotsDisallowed",
    "SiftError",
    "SitemapError",
    "StoreError",
    "WriterBusy",
    "out_of_room",
    "validation_message",
]


class SiftError(Exception):
    """The root of sift's own failures."""

    code: ClassVar[str] = "error"
    exit_status: ClassVar[int] = 2
    http_status: ClassVar[int] = 500


# -- what the caller asked for ------------------------------------------------------------------


class InvalidRequest(SiftError, ValueError):
    """A request outside what the settings allow; the message says which limit."""

    code = "invalid_request"
    http_status = 400


class QueryHasOnlyExclusions(InvalidRequest):
    """Every word of the query is excluded (`-word`): there is nothing to search for."""

    code = "query_only_excludes"


class NotFound(SiftError, LookupError):
    """An article (or another named thing) that the index does not hold."""

    code = "not_found"
    exit_status = 1
    http_status = 404


class ConfigError(SiftError, ValueError):
    """A configuration that cannot be used; the message names the file or setting and the fix."""

    code = "bad_configuration"


# -- what was given to index --------------------------------------------------------------------


class InputError(SiftError, ValueError):
    """An input that cannot be read as articles; the message says what is wrong with it."""

    code = "invalid_input"
    http_status = 422


class FeedError(InputError):
    """A resource that says it is a feed but cannot be read as one."""

    code = "invalid_feed"


class SitemapError(FeedError):
    """A resource that says it is a sitemap but cannot be read as one."""

    code = "invalid_sitemap"


class FetchError(SiftError):
    """A URL that could not be fetched; the message says why, in words a user can act on."""

    code = "fetch_failed"
    http_status = 502

    def __init__(self, url: str, reason: str, status: int | None = None):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status  # the HTTP status that refused it, if one did


class RobotsDisallowed(FetchError):
    """A URL the site's robots.txt keeps us from: skipped, never asked for."""

    code = "robots_disallowed"
    http_status = 403


# -- the index on disk --------------------------------------------------------------------------


class StoreError(SiftError, RuntimeError):
    """The index directory is missing, unreadable or inconsistent; the message says which."""

    code = "index_unavailable"
    http_status = 503


class IndexNotFound(StoreError):
    """No index at the directory named."""

    code = "index_not_found"
    http_status = 404


class ModelMismatch(StoreError):
    """The index was built with another model than the one given."""

    code = "model_mismatch"
    http_status = 409


class WriterBusy(StoreError):
    """Another process holds the index's write lock."""

    code = "index_busy"
    http_status = 409


class DiskFull(StoreError):
    """A write ran out of space (a full disk, a quota, a file size limit): the index keeps its
    last commit."""

    code = "disk_full"
    http_status = 507


#: errno values of a write that found no room: ENOSPC, EFBIG (a file size limit), EDQUOT.
_NO_ROOM = {28, 27, 122}
#: SQLite's names for the same: its own "full", and a failed write (how a file size limit
#: reaches it).
_SQLITE_NO_ROOM = {"SQLITE_FULL", "SQLITE_IOERR_WRITE"}
_NO_ROOM_WORDS = ("no space left", "file too large", "disk quota", "database or disk is full")


def out_of_room(exc: BaseException) -> bool:
    """Whether a failure of a write is a lack of space, whichever library raised it (SQLite,
    the OS, tantivy or FAISS, which report it in their messages)."""
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        return True
    if getattr(exc, "sqlite_errorname", None) in _SQLITE_NO_ROOM:
        return True
    return any(words in str(exc).lower() for words in _NO_ROOM_WORDS)


class ReadOnly(SiftError):
    """A write to an index served read-only (a replica: it is refreshed by snapshot)."""

    code = "read_only"
    http_status = 403


# -- the model ----------------------------------------------------------------------------------


class ModelError(SiftError, RuntimeError):
    """The embedding model cannot be loaded; the message says what to do."""

    code = "model_unavailable"
    http_status = 503


class EncoderUnavailable(ModelError):
    """No ONNX encoder can serve this model here; the message says why."""

    code = "encoder_unavailable"


# -- a Ray cluster ------------------------------------------------------------------------------


class ClusterUnavailable(SiftError, RuntimeError):
    """`--ray` without Ray installed, or a cluster that cannot be joined; the message says how."""

    code = "cluster_unavailable"
    http_status = 503


def validation_message(exc: ValidationError, limit: int = 1) -> str:
    """A pydantic validation failure in a line a person reads: `field: what is wrong`, for the
    first `limit` problems. The request envelope (`body`, `query`) is not part of the name."""
    parts = []
    for item in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query"))
        msg = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        if item.get("type") == "string_too_short" and loc == "text":
            msg = "article has no text"
        parts.append(f"{loc}: {msg}" if loc and loc not in msg else msg)
    return "; ".join(parts) or "invalid"
