"""All of sift's configuration, in one place: `SIFT_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_index_dir() -> Path:
    return Path(user_data_dir("sift", appauthor=False)) / "index"


class Settings(BaseSettings):
    """Effective configuration. Every field can be set as `SIFT_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SIFT_", extra="ignore")

    index: Path = Field(default_factory=default_index_dir, description="Index directory.")
    model: str | None = Field(
        default=None,
        description="Embedding model: a local path or a name. Unset: the index's own model, "
        f"or {DEFAULT_MODEL} for a new index.",
    )
    device: str | None = Field(default=None, description="torch device; unset: cuda if present.")
    precision: str = Field(
        default="auto",
        pattern="^(auto|fp32|bf16|fp16)$",
        description="Model precision: auto picks bf16 on CPUs with AMX/AVX512-BF16, fp16 on CUDA.",
    )
    batch_size: int = Field(default=64, ge=1, le=4096, description="Sentences per model call.")
    max_k: int = Field(default=100, ge=1, le=10_000, description="Largest k a search may ask.")
    max_query_chars: int = Field(default=1000, ge=1, description="Longest query accepted.")
    max_context: int = Field(default=10, ge=0, description="Largest context a search may ask.")
    # -- ranking (defaults chosen on SQuAD dev, ReQA protocol: see README "Ranking quality") ----
    rrf_k: float = Field(default=5.0, gt=0, description="Reciprocal rank fusion constant.")
    weight_dense: float = Field(default=1.0, ge=0, description="Fusion weight of dense ranks.")
    weight_keyword: float = Field(default=1.0, ge=0, description="Fusion weight of BM25 ranks.")
    weight_article: float = Field(
        default=0.5, ge=0, description="Fusion weight of the article's own BM25 rank."
    )
    keyword_context_weight: float = Field(
        default=0.4, ge=0, description="BM25 weight of a sentence's title and neighbours."
    )
    candidates: int = Field(
        default=200, ge=10, le=100_000, description="Candidates each ranking feeds the fusion."
    )
    collapse_similarity: float = Field(
        default=0.8, gt=0, le=1, description="Word overlap at which two hits count as copies."
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    # -- the API server ---------------------------------------------------------------------
    api_key: str | None = Field(
        default=None, description="When set, write routes need it (header X-API-Key)."
    )
    search_needs_key: bool = Field(
        default=False, description="Also require the API key for search routes."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty: CORS off."
    )
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="Largest body.")
    max_batch: int = Field(default=1000, ge=1, description="Most articles in one POST.")
    max_article_chars: int = Field(
        default=5_000_000, ge=100, description="Longest article text accepted."
    )
    log_format: str = Field(default="text", pattern="^(text|json)$", description="Log lines.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
