"""What every `sift` command shares: the typer app, the consoles, the common options, settings
from flags, logging on stderr, and the one place where a known failure becomes an exit status."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sift.errors import SiftError, validation_message
from sift.logs import JsonFormatter
from sift.settings import Settings

if TYPE_CHECKING:
    pass

app = typer.Typer(
    name="sift",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

IndexOpt = Annotated[
    Path | None,
    typer.Option(
        "--index", "-i", help="Index directory \\[env SIFT_INDEX; default: user data dir]."
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Embedding model path or name \\[env SIFT_MODEL]."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="Log lines on stderr: text (warnings) or json (one object a line, info and up) "
        "\\[env SIFT_LOG_FORMAT].",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

try:
    VERSION = version("sift-search")
except PackageNotFoundError:  # pragma: no cover - a bare checkout
    VERSION = "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        out.print(f"sift {VERSION}")
        raise typer.Exit()


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Semantic passage search over news articles.

    Settings come from flags, then SIFT_* environment variables, then ./sift.toml (or the file
    in SIFT_CONFIG), then defaults: `sift config` shows them and where each came from.
    """


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def flags(**values: Any) -> dict[str, Any]:
    """The settings given on the command line: those not left out."""
    return {k: v for k, v in values.items() if v is not None}


def command_settings(
    index: Path | None = None, model: str | None = None, *, logs: bool = True, **more: Any
) -> Settings:
    """The settings with the flags given; and sift's log lines set up as they say (unless the
    command hands logging to someone else: the server configures its own)."""
    try:
        settings = Settings(**flags(index=index, model=model, **more))
    except ValidationError as exc:
        fail(f"bad configuration: {validation_message(exc)}")
    except SiftError as exc:  # a config file that cannot be used
        fail(f"bad configuration: {exc}", exc.exit_status)
    if logs:
        _configure_logging(settings.log_format)
    return settings


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged (a test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _configure_logging(log_format: str) -> None:
    """sift's loggers on stderr: warnings as text, or everything from info up as JSON lines."""
    handler = _StderrHandler()
    json_lines = log_format == "json"
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(levelname)s: %(message)s")
    )
    logger = logging.getLogger("sift")
    logger.handlers = [h for h in logger.handlers if not isinstance(h, _StderrHandler)]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if json_lines else logging.WARNING)
    logger.propagate = False


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """Known failures become one line on stderr and their exit status, never a traceback: the
    one place where the CLI maps sift's errors (`sift.errors`)."""
    try:
        yield
    except SiftError as exc:
        fail(str(exc), exc.exit_status)
    except ValidationError as exc:
        fail(validation_message(exc))
    except KeyboardInterrupt:
        fail("interrupted; committed batches are kept and a rerun goes on from there", 130)
