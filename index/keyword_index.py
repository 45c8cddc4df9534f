"""The keyword index: BM25 over sentences and over whole articles, in tantivy (a Rust inverted-
index engine), derived from the SQLite rows.

Layout, under the index directory:
    keyword/sentences/      tantivy: id, text (with positions, for phrases), context (title
                            and neighbours), match (what BM25 reads by default: the sentence,
                            and its context at a lower weight)
    keyword/articles/       tantivy: num, title and text (with positions), match
    keyword/state.json      the generation of the database the two indexes reflect

SQLite stays the truth. Triggers on `sentences` and `articles` record every key a write touches
in `keyword_changes`, in the writer's own transaction; after the SQLite COMMIT the writer
applies those keys to tantivy, commits it, and writes the generation. A crash anywhere between
leaves the keys in `keyword_changes` and the state one generation behind: whoever next writes
(or opens the index while no one writes) applies them again. Applying is idempotent: a key is
deleted from tantivy, then added back from its row if the row exists.

User text never becomes query syntax: queries are built from analysed tokens (term and phrase
queries), never parsed. The analyzer is the one FTS5 used: words, lower-cased, accents folded,
English (Snowball) stemming; stopwords are dropped from queries (`search.keyword`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tantivy
from sift.errors import StoreError
from sift.index.manifest import write_json_atomically
from sift.index.recipe import context_of
from tantivy import Document, Occur, Query

log = logging.getLogger("sift.index")

KEYWORD_DIR = "keyword"
STATE_FILE = "state.json"
#: The keyword index's own format: a reader finding another one rebuilds it from SQLite.
KEYWORD_FORMAT = 1
ANALYZER = "sift_en"
#: Memory for one tantivy writer; it flushes a segment whenever this fills.
WRITER_HEAP = 64_000_000
#: How BM25 weighs a sentence's own words against its context (title and neighbours): as
#: FTS5's bm25() with column weights 1 and 0.4 did, one field with the sentence 5 times and
#: its context twice, so that a word's IDF counts the sentences holding it anywhere. Scoring the
#: two as fields of their own (each with its own statistics) measured keyword MRR@10 0.7314
#: against 0.7683 this way (`sift eval`, SQuAD dev): a title's words, in every context of its
#: article, then lose their weight in the sentence's own text.
SENTENCE_REPEAT, CONTEXT_REPEAT = 5, 2
CONTEXT_WEIGHT = CONTEXT_REPEAT / SENTENCE_REPEAT
#: Articles: the title counts twice a word of the text (FTS5 column weights 2 and 1).
TITLE_REPEAT = 2
#: Rows read from SQLite per batch while (re)building.
BATCH = 20_000

#: Triggers that record, in the writer's transaction, every key the keyword index must follow.
#: `op` is 'add' for a key never seen before, 'change' for one the index may already hold.
CHANGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS keyword_changes (
    kind TEXT NOT NULL,                      -- 's': sentence id, 'a': article num
    key  INTEGER NOT NULL,
    op   TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS keyword_sentence_added AFTER INSERT ON sentences BEGIN
    INSERT OR IGNORE INTO keyword_changes VALUES ('s', new.id, 'add');
END;
CREATE TRIGGER IF NOT EXISTS keyword_sentence_removed AFTER DELETE ON sentences BEGIN
    INSERT INTO keyword_changes VALUES ('s', old.id, 'change')
    ON CONFLICT DO UPDATE SET op = 'change';
END;
CREATE TRIGGER IF NOT EXISTS keyword_sentence_moved AFTER UPDATE OF article_id ON sentences
BEGIN
    INSERT INTO keyword_changes VALUES ('s', new.id, 'change')
    ON CONFLICT DO UPDATE SET op = 'change';
END;
CREATE TRIGGER IF NOT EXISTS keyword_article_added AFTER INSERT ON articles BEGIN
    INSERT OR IGNORE INTO keyword_changes VALUES ('a', new.num, 'add');
END;
CREATE TRIGGER IF NOT EXISTS keyword_article_changed AFTER UPDATE OF title, text ON articles
BEGIN
    INSERT INTO keyword_changes VALUES ('a', new.num, 'change')
    ON CONFLICT DO UPDATE SET op = 'change';
END;
CREATE TRIGGER IF NOT EXISTS keyword_article_removed AFTER DELETE ON articles BEGIN
    INSERT INTO keyword_changes VALUES ('a', old.num, 'change')
    ON CONFLICT DO UPDATE SET op = 'change';
END;
"""

_SENTENCE_ROWS = (
    "SELECT s.id, s.text, a.title, p.text, n.text FROM sentences s "
    "JOIN articles a ON a.id = s.article_id "
    "LEFT JOIN sentences p ON p.article_id = s.article_id AND p.position = s.position - 1 "
    "LEFT JOIN sentences n ON n.article_id = s.article_id AND n.position = s.position + 1 "
)


def analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


_ANALYZER = analyzer()


def analyse(text: str) -> list[str]:
    """The index's tokens for `text`, as a query must name them."""
    return _ANALYZER.analyze(text)


def _sentence_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", indexed=True, fast=True)
    builder.add_text_field("text", tokenizer_name=ANALYZER, index_option="position")
    builder.add_text_field("context", tokenizer_name=ANALYZER, index_option="freq")
    builder.add_text_field("match", tokenizer_name=ANALYZER, index_option="freq")
    return builder.build()


def _article_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("num", indexed=True, fast=True)
    builder.add_text_field("title", tokenizer_name=ANALYZER, index_option="position")
    builder.add_text_field("text", tokenizer_name=ANALYZER, index_option="position")
    builder.add_text_field("match", tokenizer_name=ANALYZER, index_option="freq")
    return builder.build()


def sentence_match(text: str, context: str) -> str:
    """What a sentence's BM25 reads: its own words at weight 1, its context's at 0.4."""
    return " ".join([text] * SENTENCE_REPEAT + [context] * CONTEXT_REPEAT)


def article_match(title: str | None, text: str) -> str:
    """What an article's BM25 reads: its title's words at weight 2, its text's at 1."""
    return " ".join([title or ""] * TITLE_REPEAT + [text])


def keyword_dir(directory: Path) -> Path:
    return directory / KEYWORD_DIR


def read_state(directory: Path) -> dict[str, int] | None:
    """The keyword index's state file, or None when it is missing or unreadable."""
    try:
        state = json.loads((keyword_dir(directory) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("format") != KEYWORD_FORMAT:
        return None
    return state


def keyword_generation(directory: Path) -> int | None:
    """The generation the keyword index reflects; None when there is none to trust."""
    state = read_state(directory)
    return None if state is None else int(state.get("generation", -1))


def _open(path: Path, schema: tantivy.Schema, create: bool) -> tantivy.Index:
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not tantivy.Index.exists(str(path)):
        raise StoreError(f"the keyword index {path} is missing (sift check --repair rebuilds it)")
    try:
        index = tantivy.Index(schema, path=str(path), reuse=True)
    except ValueError as exc:
        raise StoreError(f"the keyword index {path} cannot be opened: {exc}") from exc
    index.register_tokenizer(ANALYZER, _ANALYZER)
    index.config_reader("manual")
    return index


class KeywordIndex:
    """Both keyword indexes of one index directory, for reading (and, through
    `KeywordWriter`, writing). Searches are safe from many threads."""

    def __init__(self, directory: Path, create: bool = False):
        self.directory = directory
        root = keyword_dir(directory)
        self.sentence_schema = _sentence_schema()
        self.article_schema = _article_schema()
        self.sentences = _open(root / "sentences", self.sentence_schema, create)
        self.articles = _open(root / "articles", self.article_schema, create)
        self.generation = keyword_generation(directory)

    def reload(self) -> None:
        """See the last commit of both indexes."""
        self.sentences.reload()
        self.articles.reload()
        self.generation = keyword_generation(self.directory)

    # -- queries ----------------------------------------------------------------------------------

    def _terms(self, schema: tantivy.Schema, field: str, words: Iterable[str]) -> list[Query]:
        tokens = dict.fromkeys(t for w in words for t in analyse(w))
        return [Query.term_query(schema, field, t, index_option="freq") for t in tokens]

    def _restricted(
        self, query: Query, schema: tantivy.Schema, field: str, allowed: np.ndarray | None
    ) -> Query:
        """`query`, over the documents whose `field` is in `allowed` only (a filter applied
        before ranking: the set scores nothing)."""
        if allowed is None:
            return query
        keys = [int(k) for k in allowed]
        only = Query.const_score_query(Query.term_set_query(schema, field, keys), 0.0)
        return Query.boolean_query([(Occur.Must, query), (Occur.Must, only)])

    def _top(
        self, index: tantivy.Index, field: str, query: Query, n: int
    ) -> tuple[list[int], list[float]]:
        if n <= 0:
            return [], []
        searcher = index.searcher()
        hits = searcher.search(query, n, count=False).hits
        if not hits:
            return [], []
        keys = searcher.fast_field_values(field, [address for _, address in hits])
        best = sorted(zip(keys, (s for s, _ in hits), strict=True), key=lambda h: (-h[1], h[0]))
        return [int(k) for k, _ in best], [float(s) for _, s in best]  # type: ignore[arg-type]

    def _any(
        self, schema: tantivy.Schema, field: str, words: Iterable[str], boost: float = 1.0
    ) -> list[tuple[Occur, Query]]:
        """One optional clause per analysed word of `words` on `field` (BM25, OR)."""
        terms = self._terms(schema, field, words)
        if boost != 1.0:
            terms = [Query.boost_query(q, boost) for q in terms]
        return [(Occur.Should, q) for q in terms]

    def _ranked(
        self,
        sentences: bool,
        clauses: list[tuple[Occur, Query]],
        n: int,
        allowed: np.ndarray | None,
    ) -> tuple[list[int], list[float]]:
        """The best `n` keys (sentence ids, or article nums) for the OR of `clauses`."""
        if not clauses:
            return [], []
        index, schema, key = (
            (self.sentences, self.sentence_schema, "id")
            if sentences
            else (self.articles, self.article_schema, "num")
        )
        query = self._restricted(Query.boolean_query(clauses), schema, key, allowed)
        return self._top(index, key, query, n)

    def sentence_scores(
        self, words: list[str], n: int, allowed: np.ndarray | None = None
    ) -> tuple[list[int], list[float]]:
        """Sentence ids and BM25 scores, best first (`sentence_match`). Any word may match
        (OR); only sentences in `allowed` when given."""
        clauses = self._any(self.sentence_schema, "match", words)
        return self._ranked(True, clauses, n, allowed)

    def field_scores(self, field: str, words: list[str], n: int) -> tuple[list[int], list[float]]:
        """Sentence ids and BM25 scores over one field alone (text, context or match), best
        first: for studies of the fields (bench/fusion_study.py)."""
        return self._ranked(True, self._any(self.sentence_schema, field, words), n, None)

    def article_scores(
        self, words: list[str], n: int, allowed: np.ndarray | None = None
    ) -> tuple[list[int], list[float]]:
        """Article nums and BM25 scores over title and text, best first (`article_match`)."""
        return self._ranked(False, self._any(self.article_schema, "match", words), n, allowed)

    def _phrase(self, schema: tantivy.Schema, field: str, words: Iterable[str]) -> Query | None:
        tokens = analyse(" ".join(words))
        if not tokens:
            return None
        if len(tokens) == 1:
            return Query.term_query(schema, field, tokens[0], index_option="freq")
        return Query.phrase_query(schema, field, tokens)

    def _all(self, index: tantivy.Index, field: str, query: Query) -> np.ndarray:
        searcher = index.searcher()
        total = searcher.num_docs
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        hits = searcher.search(query, total, count=False).hits
        keys = searcher.fast_field_values(field, [address for _, address in hits])
        return np.unique(np.asarray(keys, dtype=np.int64))

    def sentences_with(self, words: tuple[str, ...]) -> np.ndarray:
        """Ids of the sentences whose own text holds the phrase (its words in order)."""
        query = self._phrase(self.sentence_schema, "text", words)
        if query is None:
            return np.zeros(0, dtype=np.int64)
        return self._all(self.sentences, "id", query)

    def articles_with_any(self, phrases: Iterable[tuple[str, ...]]) -> np.ndarray:
        """Nums of the articles whose title or text holds any of the phrases."""
        clauses = [
            (Occur.Should, q)
            for words in phrases
            for field in ("title", "text")
            if (q := self._phrase(self.article_schema, field, words)) is not None
        ]
        if not clauses:
            return np.zeros(0, dtype=np.int64)
        return self._all(self.articles, "num", Query.boolean_query(clauses))

    def held(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sentence id and every article num the indexes hold (for `sift check`)."""
        return (
            self._all(self.sentences, "id", Query.all_query()),
            self._all(self.articles, "num", Query.all_query()),
        )

    def counts(self) -> tuple[int, int]:
        return self.sentences.searcher().num_docs, self.articles.searcher().num_docs


class KeywordWriter:
    """Brings the keyword index to the database's committed state. Held by the one process that
    writes the index (it holds the write lock)."""

    def __init__(self, directory: Path, threads: int = 1):
        self.directory = directory
        fresh = read_state(directory) is None
        if fresh:  # no state to trust: start from nothing, then rebuild from SQLite
            shutil.rmtree(keyword_dir(directory), ignore_errors=True)
        try:
            self.index = KeywordIndex(directory, create=True)
        except (StoreError, ValueError, OSError) as exc:  # derived: rebuilt from the rows
            log.warning("keyword index unreadable (%s): rebuilding it from the database", exc)
            shutil.rmtree(keyword_dir(directory), ignore_errors=True)
            self.index, fresh = KeywordIndex(directory, create=True), True
        self.threads = threads
        self._sentences = self.index.sentences.writer(WRITER_HEAP, threads)
        self._articles = self.index.articles.writer(WRITER_HEAP, threads)
        self.needs_rebuild = fresh

    def lagging(self, generation: int) -> bool:
        return self.needs_rebuild or keyword_generation(self.directory) != generation

    def sync(self, conn: sqlite3.Connection, generation: int, replay: bool) -> int:
        """Apply the recorded changes (or everything, when a rebuild is due), commit, and
        record `generation`. The caller has committed the rows; the changes are cleared by the
        next write transaction (`forget_applied`). `replay`: the changes may be applied in part
        already (catching up after a crash). Returns the keys applied."""
        try:
            if self.needs_rebuild:
                applied = self._rebuild(conn)
            else:
                applied = self._apply(conn, replay=replay)
            self._sentences.commit()
            self._articles.commit()
        except BaseException:
            self.rollback()
            raise
        _write_state(self.directory, generation)
        self.needs_rebuild = False
        self.index.reload()
        return applied

    def _apply(self, conn: sqlite3.Connection, replay: bool) -> int:
        """`replay`: the index may already hold some added keys (a crash after tantivy's commit
        and before the state was written): delete every key before adding it back."""
        changes = conn.execute("SELECT kind, key, op FROM keyword_changes").fetchall()
        if not changes:
            return 0
        sentence_keys = [k for kind, k, _ in changes if kind == "s"]
        article_keys = [k for kind, k, _ in changes if kind == "a"]
        for kind, key, op in changes:
            if replay or op == "change":
                if kind == "s":
                    self._sentences.delete_documents_by_term("id", key)
                else:
                    self._articles.delete_documents_by_term("num", key)
        self._add_sentences(
            conn.execute(
                _SENTENCE_ROWS + "WHERE s.id IN (SELECT value FROM json_each(?))",
                (json.dumps(sentence_keys),),
            )
        )
        self._add_articles(
            conn.execute(
                "SELECT num, title, text FROM articles "
                "WHERE num IN (SELECT value FROM json_each(?))",
                (json.dumps(article_keys),),
            )
        )
        return len(changes)

    def _rebuild(self, conn: sqlite3.Connection) -> int:
        self._sentences.delete_all_documents()
        self._articles.delete_all_documents()
        added = self._add_sentences(_batches(conn.execute(_SENTENCE_ROWS + "ORDER BY s.id")))
        added += self._add_articles(
            _batches(conn.execute("SELECT num, title, text FROM articles ORDER BY num"))
        )
        return added

    def _add_sentences(self, rows: Iterable[tuple]) -> int:  # type: ignore[type-arg]
        added = 0
        for sid, text, title, before, after in rows:
            doc = Document()
            doc.add_integer("id", sid)
            doc.add_text("text", text)
            context = context_of(title, before, after)
            doc.add_text("context", context)
            doc.add_text("match", sentence_match(text, context))
            self._sentences.add_document(doc)
            added += 1
        return added

    def _add_articles(self, rows: Iterable[tuple]) -> int:  # type: ignore[type-arg]
        added = 0
        for num, title, text in rows:
            doc = Document()
            doc.add_integer("num", num)
            doc.add_text("title", title or "")
            doc.add_text("text", text)
            doc.add_text("match", article_match(title, text))
            self._articles.add_document(doc)
            added += 1
        return added

    def rollback(self) -> None:
        self._sentences.rollback()
        self._articles.rollback()

    def close(self) -> None:
        """Let tantivy finish the merges it started, then release its writers."""
        for writer in (self._sentences, self._articles):
            with contextlib.suppress(ValueError, RuntimeError):
                writer.wait_merging_threads()


def advance_keyword(directory: Path, old: int, new: int) -> None:
    """A commit that changed no row (a vector rebuild) moved the generation from `old` to
    `new`: a keyword index that reflected `old` reflects `new` as well."""
    if keyword_generation(directory) == old:
        _write_state(directory, new)


def _write_state(directory: Path, generation: int) -> None:
    write_json_atomically(
        keyword_dir(directory) / STATE_FILE,
        json.dumps({"format": KEYWORD_FORMAT, "generation": generation}) + "\n",
    )


def forget_applied(conn: sqlite3.Connection) -> None:
    """In a write transaction, once the keyword index reflects the committed state: the
    recorded changes are applied, and the table starts over for this transaction."""
    conn.execute("DELETE FROM keyword_changes")


def _batches(cursor: sqlite3.Cursor) -> Iterator[tuple]:  # type: ignore[type-arg]
    while rows := cursor.fetchmany(BATCH):
        yield from rows
