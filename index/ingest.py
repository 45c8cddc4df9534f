"""Reading articles from files and folders: txt, md, html, json, jsonl, csv."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sift.errors import InputError, validation_message
from sift.index.records import Article, Failure

TEXT_SUFFIXES = {".txt", ".text"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | {".json", ".jsonl", ".csv"}
MAX_TITLE_CHARS = 200
DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024


@dataclass
class IngestTally:
    """What a walk over the inputs saw besides articles."""

    files: int = 0
    skipped: list[str] = field(default_factory=list)  # files of types sift does not read


def read_inputs(
    paths: Iterable[Path],
    tally: IngestTally | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Iterator[Article | Failure]:
    """Yield every article under `paths` (files or folders, recursively), or why one failed.

    A bad file is yielded as a Failure and the walk goes on, so one bad file never stops a run.
    """
    tally = tally if tally is not None else IngestTally()
    for path in paths:
        if not path.exists():
            yield Failure(str(path), "no such file or directory")
        elif path.is_dir():
            root = path.resolve()
            for file in _walk(path):
                if file.is_symlink() and not file.resolve().is_relative_to(root):
                    yield Failure(str(file), "symbolic link leads outside the folder; skipped")
                elif file.suffix.lower() in SUPPORTED_SUFFIXES:
                    tally.files += 1
                    yield from _read_file_safely(file, path, max_file_bytes)
                else:
                    tally.skipped.append(str(file))
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
            yield Failure(str(path), f"unsupported file type {path.suffix or '(none)'!r} ({kinds})")
        else:
            tally.files += 1
            yield from _read_file_safely(path, path.parent, max_file_bytes)


def _walk(folder: Path) -> Iterator[Path]:
    # Sorted for a stable order; hidden files and folders (.git, .DS_Store) are not articles.
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir() and not child.is_symlink():
            yield from _walk(child)
        elif child.is_file():
            yield child


def _read_file_safely(path: Path, root: Path, max_bytes: int) -> Iterator[Article | Failure]:
    try:
        yield from read_file(path, root, max_bytes)
    except InputError as exc:
        yield Failure(str(path), str(exc))
    except OSError as exc:
        yield Failure(str(path), f"cannot read: {exc.strerror or exc}")


def read_file(
    path: Path, root: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> Iterator[Article | Failure]:
    """Articles in one file. Ids not given in the file derive from its path under `root`."""
    text = decode(path, max_bytes)
    base_id = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        yield article_or_failure(
            lambda: Article(id=base_id, title=_first_line(text), text=text), str(path)
        )
    elif suffix in MARKDOWN_SUFFIXES:
        yield article_or_failure(lambda: _markdown_article(text, base_id), str(path))
    elif suffix in HTML_SUFFIXES:
        yield article_or_failure(lambda: html_article(text, base_id), str(path))
    elif suffix == ".json":
        yield from _json_articles(text, base_id, str(path))
    elif suffix == ".jsonl":
        yield from _jsonl_articles(text, base_id, str(path))
    elif suffix == ".csv":
        yield from _csv_articles(text, base_id, str(path))
    else:
        raise InputError(f"unsupported file type {suffix!r}")


def decode(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> str:
    """The file's text, or an InputError naming what is wrong with it."""
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"file is {size:,} bytes, over the limit of {max_bytes:,}")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise InputError("binary file (holds NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 (invalid byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    if not text.strip():
        raise InputError("empty file")
    return text


def article_or_failure(build: Callable[[], Article], where: str) -> Article | Failure:
    """The article `build` makes, or the reason it could not, as a Failure at `where`."""
    try:
        return build()
    except ValidationError as exc:
        return Failure(where, validation_message(exc))
    except (ValueError, TypeError) as exc:
        return Failure(where, str(exc))


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= MAX_TITLE_CHARS else line[: MAX_TITLE_CHARS - 1] + "…"
    return None


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


def _markdown_article(text: str, base_id: str) -> Article:
    fields: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        for line in match.group(1).splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip():
                fields[key.strip().lower()] = value.strip().strip("\"'")
        text = text[match.end() :]
    text = markdown_to_text(text)
    fields.setdefault("title", _first_line(text))
    fields.setdefault("id", base_id)
    return Article.from_mapping({**fields, "text": text})


_MD_RULES = [
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE), r"\1"),  # headings
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links keep their words
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])"), r"\2"),  # italics
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.MULTILINE), ""),  # block quotes
    (re.compile(r"^[ \t]{0,3}([-*+]|\d+[.)])[ \t]+", re.MULTILINE), ""),  # list markers
    (re.compile(r"^[ \t]{0,3}([-*_][ \t]*){3,}$", re.MULTILINE), ""),  # rules
]


def markdown_to_text(text: str) -> str:
    """Markdown as the plain words a reader sees; sentence offsets then point into these."""
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return text.strip()


def html_article(html: str, base_id: str, url: str | None = None) -> Article:
    """The main text of a web page (navigation, scripts and boilerplate dropped) as an article."""
    import trafilatura  # slow to import; only HTML needs it

    doc = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, include_comments=False, include_tables=True
    )
    body = (doc.text if doc is not None else None) or ""
    if not body.strip():
        raise InputError("no main text found in the HTML page")
    # Extracted paragraphs come one per line: make each a paragraph of its own.
    text = "\n\n".join(line.strip() for line in body.splitlines() if line.strip())
    return Article(
        id=base_id,
        title=doc.title or _first_line(text),
        text=text,
        url=doc.url or url,
        source=doc.sitename,
        published=_safe_date(doc.date),
        metadata={k: v for k, v in {"author": doc.author}.items() if v},
    )


def _safe_date(value: str | None) -> str | None:
    try:
        return Article.model_validate({"text": "x", "published": value}).published
    except ValidationError:
        return None


def _records(
    items: Iterable[tuple[str, Any]], base_id: str, where: str
) -> Iterator[Article | Failure]:
    for label, raw in items:
        here = f"{where} {label}"
        if not isinstance(raw, dict):
            yield Failure(here, f"expected a JSON object, got {type(raw).__name__}")
            continue
        article = article_or_failure(lambda raw=raw: Article.from_mapping(raw), here)
        if isinstance(article, Article):
            article = article.with_default_id(f"{base_id}#{label.split()[-1]}")
        yield article


def _json_articles(text: str, base_id: str, where: str) -> Iterator[Article | Failure]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InputError("JSON nested too deeply") from None
    if isinstance(data, dict):
        article = article_or_failure(lambda: Article.from_mapping(data), where)
        yield article.with_default_id(base_id) if isinstance(article, Article) else article
    elif isinstance(data, list):
        if not data:
            raise InputError("empty JSON list: no articles")
        yield from _records(((f"item {i}", item) for i, item in enumerate(data, 1)), base_id, where)
    else:
        raise InputError("JSON must be an article object or a list of them")


def _jsonl_articles(text: str, base_id: str, where: str) -> Iterator[Article | Failure]:
    def parsed() -> Iterator[tuple[str, Any]]:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield (
                    f"line {number}",
                    _Malformed(f"malformed JSON: {exc.msg} (column {exc.colno})"),
                )
            except RecursionError:
                yield f"line {number}", _Malformed("JSON nested too deeply")

    for label, raw in parsed():
        if isinstance(raw, _Malformed):
            yield Failure(f"{where} {label}", raw.reason)
        else:
            yield from _records([(label, raw)], base_id, where)


@dataclass(frozen=True)
class _Malformed:
    reason: str


def _csv_articles(text: str, base_id: str, where: str) -> Iterator[Article | Failure]:
    csv.field_size_limit(2**31 - 1)  # article bodies outgrow csv's 128 KiB default
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    if not any(name in header for name in ("text", "body", "content", "article")):
        raise InputError(
            f"CSV header has no text column (found: {', '.join(header) or 'nothing'}); "
            "name one 'text'"
        )
    reader.fieldnames = header

    def rows() -> Iterator[tuple[str, Any]]:
        try:
            for row in reader:
                if None in row:
                    yield f"row {reader.line_num}", "more fields than the header"
                    continue
                yield (
                    f"row {reader.line_num}",
                    {k: v for k, v in row.items() if v not in (None, "")},
                )
        except csv.Error as exc:
            yield f"row {reader.line_num}", f"malformed CSV: {exc}"

    for label, raw in rows():
        if isinstance(raw, str):
            yield Failure(f"{where} {label}", raw)
        elif "text" not in raw and not any(k in raw for k in ("body", "content", "article")):
            yield Failure(f"{where} {label}", "article has no text")
        else:
            yield from _records([(label, raw)], base_id, where)


def within_limits(items: Iterable[Article | Failure], limit: int) -> Iterator[Article | Failure]:
    """`items`, with an article longer than `limit` characters turned into a Failure."""
    for item in items:
        if isinstance(item, Article) and len(item.text) > limit:
            where = item.id or (item.title or "article")
            yield Failure(
                where,
                f"article is {len(item.text):,} characters, over the "
                f"limit of {limit:,} (SIFT_MAX_ARTICLE_CHARS)",
            )
        else:
            yield item
