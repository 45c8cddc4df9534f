"""The writer side of sift: read articles, split sentences, embed, store."""

from index.embed import Embedder, ModelError
from index.ingest import read_inputs
from index.records import Article, Failure, Sentence
from index.settings import Settings, get_settings
from index.split import split_sentences
from index.store import IndexNotFound, StoreError
from index.writer import IndexSummary, IndexWriter, ModelMismatch, WriterBusy

__all__ = [
    "Article",
    "Embedder",
    "Failure",
    "IndexNotFound",
    "IndexSummary",
    "IndexWriter",
    "ModelError",
    "ModelMismatch",
    "Sentence",
    "Settings",
    "StoreError",
    "WriterBusy",
    "get_settings",
    "read_inputs",
    "split_sentences",
]
