"""The writer side of sift: read articles, split sentences, embed, store."""

from sift.errors import IndexNotFound, ModelError, ModelMismatch, StoreError, WriterBusy
from sift.index.embed import Embedder
from sift.index.ingest import read_inputs
from sift.index.records import Article, Failure, Sentence
from sift.index.split import split_sentences
from sift.index.writer import IndexSummary, IndexWriter
from sift.settings import Settings, get_settings

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
