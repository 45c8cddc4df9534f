"""The data types of the writer side: an article, a sentence of it, an ingest failure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Fields an article has by name; anything else a source gives is kept in `metadata`.
ARTICLE_FIELDS = ("id", "title", "text", "url", "source", "published")
#: Other names sources use for the text, tried in this order when `text` is absent.
TEXT_ALIASES = ("text", "body", "content", "article")
DATE_ALIASES = ("published", "date", "published_at", "pubdate")


def iso_date(text: str, field: str = "date") -> str:
    """`text` if it is an ISO 8601 date or date-time (the one check, for articles and filters),
    else a ValueError saying so."""
    try:
        # fromisoformat accepts dates and date-times; "Z" needs help on Python 3.10.
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{field} must be an ISO date like 2024-06-19, got {text!r}") from None
    return text


class Article(BaseModel):
    """One article: its text, the fields sift knows, and any other metadata as given."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=512)
    title: str | None = None
    text: str = Field(min_length=1)
    url: str | None = None
    source: str | None = None
    published: str | None = Field(default=None, description="ISO 8601 date or date-time.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("article has no text")
        return value

    @field_validator("published", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if isinstance(value, datetime | date):
            return value.isoformat()
        return iso_date(str(value).strip(), "published")

    def content_hash(self) -> str:
        """What decides whether re-indexing an article changes anything."""
        payload = self.model_dump(exclude={"id"}, mode="json")
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def with_default_id(self, fallback: str | None = None) -> Article:
        """The article with an id: its own, else `fallback`, else one derived from its content."""
        if self.id:
            return self
        return self.model_copy(update={"id": fallback or "sha-" + self.content_hash()[:16]})

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> Article:
        """Build an article from a loosely shaped record (a JSON object, a CSV row)."""
        data = dict(raw)
        text_key = next((k for k in TEXT_ALIASES if k in data), None)
        if text_key is None:
            raise ValueError(f"record has no text field (one of: {', '.join(TEXT_ALIASES)})")
        fields: dict[str, Any] = {"text": data.pop(text_key)}
        date_key = next((k for k in DATE_ALIASES if data.get(k) not in (None, "")), None)
        if date_key is not None:
            fields["published"] = data.pop(date_key)
        for key in ("id", "title", "url", "source"):
            value = data.pop(key, None)
            if value not in (None, ""):
                fields[key] = str(value)
        metadata = data.pop("metadata", None)
        extra = dict(metadata) if isinstance(metadata, dict) else {}
        extra.update(data)
        if not isinstance(fields["text"], str):
            raise ValueError("text must be a string")
        return cls(**fields, metadata=extra)


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of an article: `text == article.text[start:end]`."""

    position: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Failure:
    """An input that could not be indexed, and why, in words a user can act on."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        """The shape every output uses (CLI --json, the API's `failed`)."""
        return {"where": self.where, "reason": self.reason}
