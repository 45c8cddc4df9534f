"""All of sift's configuration, in one place.

Where a value comes from, strongest first: the command line's flags (arguments to `Settings`),
`SIFT_*` environment variables, a `sift.toml` file (in the current directory, or the path in
`SIFT_CONFIG`), the defaults here. `describe()` says which of them gave each value.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sift.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_MODEL = "all-MiniLM-L6-v2"
CONFIG_FILE = "sift.toml"
#: Names the environment variable that points at a config file elsewhere than ./sift.toml.
CONFIG_ENV = "SIFT_CONFIG"
#: Fields whose values are never shown, only whether they are set.
SECRET_FIELDS = frozenset({"api_key"})


@dataclass(frozen=True)
class FusionWeights:
    """What each list weighs in hybrid fusion: the dense ranking, the sentence's BM25 and the
    article's own BM25."""

    dense: float
    keyword: float
    article: float


#: Each fusion's weights where `weight_*` are unset, chosen on SQuAD's tune half (README
#: "Ranking quality"); their units differ (shares of normalised scores in convex, of
#: 1/(k + rank) in rrf).
FUSION_WEIGHTS = {
    "convex": FusionWeights(dense=0.8, keyword=0.2, article=0.05),
    "rrf": FusionWeights(dense=1.0, keyword=1.0, article=0.5),
}


def default_index_dir() -> Path:
    return Path(user_data_dir("sift", appauthor=False)) / "index"


def default_cache_dir() -> Path:
    return Path(user_cache_dir("sift", appauthor=False))


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
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        default="auto",
        description="Model precision when indexing: auto picks bf16 on CPUs with "
        "AMX/AVX512-BF16, fp16 on CUDA, int8 (the ONNX export quantized, lossy within the "
        "quality rule) on other CPUs with VNNI, else fp32. int8 runs on the onnx backend.",
    )
    backend: Literal["auto", "torch", "onnx"] = Field(
        default="auto",
        description="What embeds sentences when indexing: torch (at `precision`), onnx (the "
        "model's ONNX export, fused, fp32 unless precision is int8), auto (torch on CUDA and "
        "bf16 CPUs, else onnx: index/backends.py; the choice and its reason go into the "
        "manifest).",
    )
    query_encoder: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="What embeds queries: onnx (the index's model exported to onnxruntime: fast "
        "start, small memory), torch (sentence-transformers), auto (onnx where the model exports).",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="CPU threads of torch (indexing; queries too where torch embeds them); "
        "unset: torch's default, and 1 in `sift serve`, which leaves a core to searches.",
    )
    query_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="CPU threads of one ONNX query-encoder call; unset: one per core.",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Where ONNX exports of models are kept (one per model).",
    )
    batch_size: int = Field(default=64, ge=1, le=4096, description="Sentences per model call.")
    commit_every: int = Field(
        default=10_000, ge=1, description="A long index run commits every this many sentences."
    )
    commit_seconds: float = Field(
        default=60.0, gt=0, description="... or after this many seconds of work, if sooner."
    )
    merge_min: int = Field(
        default=20_000,
        ge=1,
        description="Sentences added or removed since the vectors base above which a commit "
        "merges them into a new base (once they also pass 10 % of the index).",
    )
    merges: Literal["background", "inline"] = Field(
        default="background",
        description="Where merges of the vectors run: background (a thread builds the new base "
        "while writes go on; a commit installs it in a moment) or inline (the commit that makes "
        "one due waits for it).",
    )
    ray_address: str | None = Field(
        default=None,
        description="Index on a Ray cluster: local (start one here), auto (join the running "
        "one) or ray://host:port; unset: index in this process.",
    )
    ray_actors: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Embedding actors on the Ray cluster; unset: one a GPU, else one per 4 CPUs.",
    )
    ray_tokenize: Literal["auto", "cpu", "actor"] = Field(
        default="auto",
        description="Where texts become token ids on a Ray cluster: cpu (tasks of their own, "
        "so that a GPU actor runs the model alone), actor (in the embedding actor), auto (cpu "
        "where the actors have GPUs, else actor).",
    )
    max_k: int = Field(default=100, ge=1, le=10_000, description="Largest k a search may ask.")
    max_query_chars: int = Field(default=1000, ge=1, description="Longest query accepted.")
    max_context: int = Field(default=10, ge=0, description="Largest context a search may ask.")
    # -- ranking (defaults chosen on SQuAD dev, ReQA protocol: see README "Ranking quality") ----
    fusion: Literal["rrf", "convex"] = Field(
        default="convex",
        description="How hybrid fuses its lists: convex (a weighted mean of their scores, each "
        "list's on [0, 1] from its least possible score to its best: a clear winner keeps its "
        "margin) or rrf (ranks alone). See README 'Ranking quality'.",
    )
    rrf_k: float = Field(default=5.0, gt=0, description="Reciprocal rank fusion constant.")
    weight_dense: float | None = Field(
        default=None, ge=0, description="Fusion weight of the dense list; unset: the fusion's own."
    )
    weight_keyword: float | None = Field(
        default=None, ge=0, description="Fusion weight of the BM25 list; unset: the fusion's own."
    )
    weight_article: float | None = Field(
        default=None,
        ge=0,
        description="Fusion weight of the article's own BM25; unset: the fusion's own.",
    )
    candidates: int = Field(
        default=200, ge=10, le=100_000, description="Candidates each ranking feeds the fusion."
    )
    collapse_similarity: float = Field(
        default=0.8, gt=0, le=1, description="Word overlap at which two hits count as copies."
    )

    host: str = Field(default="127.0.0.1", description="Address `sift serve` listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `sift serve` listens on.")

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
    workers: int = Field(
        default=1, ge=1, le=64, description="Processes `sift serve` runs over the one index."
    )
    read_only: bool = Field(
        default=False,
        description="Refuse every write (a replica serving a snapshot): the API answers 403.",
    )
    write_wait: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Seconds a write waits for another writer to finish before failing as busy; "
        "unset: 0 for commands, 30 in `sift serve` (its workers take turns).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines on stderr: text, or json (one object a line).",
    )

    # -- web pages and feeds (`sift index URL`, `sift watch`) -----------------------------------
    web_timeout: float = Field(
        default=10.0, gt=0, le=600, description="Seconds to connect, and at most between bytes."
    )
    web_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a fetch after a network error, 429 or 5xx."
    )
    web_backoff: float = Field(
        default=1.0, ge=0, le=60, description="Seconds before the first retry; doubles each time."
    )
    web_max_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Largest page or feed fetched, in bytes."
    )
    web_delay: float = Field(
        default=0.5, ge=0, le=60, description="Seconds between two requests to the same host."
    )
    web_user_agent: str | None = Field(
        default=None,
        description="User-Agent header; unset: sift/<version> (+https://sift.invalid/bot). "
        "Put your own contact URL here.",
    )
    web_ignore_robots: bool = Field(
        default=False,
        description="Fetch what robots.txt disallows, and ignore its Crawl-delay. Only for sites "
        "you own or have leave to crawl.",
    )
    web_robots_lifetime: float = Field(
        default=3600.0,
        ge=0,
        le=86400,
        description="Seconds a host's robots.txt is kept before it is read again.",
    )
    watch_every: float = Field(
        default=900.0, ge=0, description="Seconds between two rounds of `sift watch`."
    )

    def weights(self, fusion: str | None = None) -> FusionWeights:
        """The weights of `fusion` (default: the one in force): those set, else its own."""
        own = FUSION_WEIGHTS[fusion or self.fusion]
        return FusionWeights(
            dense=own.dense if self.weight_dense is None else self.weight_dense,
            keyword=own.keyword if self.weight_keyword is None else self.weight_keyword,
            article=own.article if self.weight_article is None else self.weight_article,
        )

    @field_validator("index", "cache_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        # Expanded once, here: every command then means the same directory by `~/x`.
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlSource(settings_cls, config_file()))


def config_file() -> Path | None:
    """The config file in force: $SIFT_CONFIG (which must exist), else ./sift.toml if present."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"no config file at {path} (from {CONFIG_ENV})")
        return path
    local = Path.cwd() / CONFIG_FILE
    return local if local.is_file() else None


class TomlSource(TomlConfigSettingsSource):
    """A sift.toml: top-level keys named as the fields. A relative `index` is relative to the
    file, so a project's sift.toml means the same index from any working directory."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None):
        self.names = set(settings_cls.model_fields)
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            with file_path.open("rb") as handle:
                data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {file_path}: {exc.strerror or exc}") from None
        if unknown := sorted(set(data) - self.names):
            raise ConfigError(
                f"{file_path}: unknown setting {unknown[0]!r} (see `sift config` for the names)"
            )
        index = data.get("index")
        if isinstance(index, str) and not Path(index).expanduser().is_absolute():
            data["index"] = str(Path(file_path).resolve().parent / index)
        return data


@dataclass(frozen=True)
class ConfigValue:
    """One setting as in force: its value (secrets masked) and where it came from."""

    name: str
    value: Any
    origin: str  # "default", "sift.toml" (the file's name), "env SIFT_X" or "flag"
    description: str | None


def describe(settings: Settings, flags: dict[str, Any] | None = None) -> list[ConfigValue]:
    """Every setting of `settings`, which was built from `flags`, with the source that won."""
    flags = flags or {}
    env = EnvSettingsSource(Settings)()
    path = config_file()
    toml = TomlSource(Settings, path)() if path else {}
    values = settings.model_dump(mode="json")
    described = []
    for name, field in Settings.model_fields.items():
        if name in flags:
            origin = "flag"
        elif name in env:
            origin = f"env SIFT_{name.upper()}"
        elif name in toml:
            origin = path.name if path else CONFIG_FILE
        else:
            origin = "default"
        value = values[name]
        if name in SECRET_FIELDS and value is not None:
            value = "********"
        described.append(ConfigValue(name, value, origin, field.description))
    return described


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
