"""Filters on articles, turned into SQL that runs before ranking (never after it): the
article fields, and the phrases and excluded words of the query (`query_syntax`), which the
reader looks up in the keyword index (`search.reader`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArticleFilter:
    """Which articles a search may return. Empty: all of them."""

    sources: tuple[str, ...] = ()
    since: str | None = None  # ISO date or date-time, inclusive
    until: str | None = None  # ISO date or date-time, inclusive
    ids: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()  # metadata key equals value (as text)
    phrases: tuple[tuple[str, ...], ...] = ()  # phrases the hit sentence must hold (query_syntax)
    excluded: tuple[tuple[str, ...], ...] = ()  # phrases no article may hold, title or text

    def __bool__(self) -> bool:
        return self.on_fields() or bool(self.phrases or self.excluded)

    def on_fields(self) -> bool:
        return bool(self.sources or self.since or self.until or self.ids or self.meta)

    def where(self, alias: str = "a") -> tuple[str, list[object]]:
        """A SQL condition over the articles table under `alias`, and its parameters."""
        clauses: list[str] = []
        params: list[object] = []
        if self.sources:
            clauses.append(f"{alias}.source IN ({','.join('?' * len(self.sources))})")
            params.extend(self.sources)
        # Compare on the bound's own precision: until=2024-06-19 takes 2024-06-19T23:00 too.
        if self.since:
            clauses.append(f"substr({alias}.published, 1, ?) >= ?")
            params.extend([len(self.since), self.since])
        if self.until:
            clauses.append(f"substr({alias}.published, 1, ?) <= ?")
            params.extend([len(self.until), self.until])
        if self.ids:
            clauses.append(f"{alias}.id IN ({','.join('?' * len(self.ids))})")
            params.extend(self.ids)
        for key, value in self.meta:
            path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
            clauses.append(f"CAST(json_extract({alias}.metadata, ?) AS TEXT) = ?")
            params.extend([path, value])
        return (" AND ".join(clauses) or "1"), params
