"""`callstt`: the project's one console entry point; each subcommand is a thin shell over library code.

Exit codes scripts can test: 0 ok, 1 failure (one clear line on stderr), 2 usage error.
"""

from __future__ import annotations

import logging
import sys

import typer

from models.store import PACKAGED_MODELS, ModelFileError, resolve_model
from streams.settings import Settings, SettingsError

app = typer.Typer(help="Speech-to-text stream processor for live calls (Kafka in, Avro transcripts out).",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def callstt() -> None:
    """Settings come from the environment (CALLSTT_*, plus the old service's names); flags override them."""


class CliFailure(Exception):
    """An expected failure: printed as one line, exit code 1."""


def load_settings(**overrides) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except SettingsError as error:
        raise CliFailure(str(error)) from error


@app.command()
def models(
    check: bool = typer.Option(False, "--check", help="Resolve and load the configured model to prove it works"),
    model: str = typer.Option(None, "--model", help="Model reference (default: MODEL_SIZE / CALLSTT_MODEL)"),
) -> None:
    """List the packaged models and where the configured one resolves to."""
    settings = load_settings(model=model)
    for name, packaged in PACKAGED_MODELS.items():
        typer.echo(f"packaged  {name:<8} {packaged.description}")
    directory = resolve_model(settings.model, settings.model_cache_path, settings.allow_hub_download)
    typer.echo(f"configured {settings.model} -> {directory}")
    if check:
        from models.faster_whisper_backend import FasterWhisperBackend

        FasterWhisperBackend(directory, settings.model, settings.device, settings.compute_type, settings.cpu_threads)
        typer.echo(f"loaded {settings.model} ({settings.compute_type} on {settings.device})")


@app.command()
def worker(
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    web_port: int = typer.Option(None, "--web-port", help="Port of the worker's web pages"),
    web_host: str = typer.Option(None, "--web-host", help="Bind address of the web pages"),
    model: str = typer.Option(None, "--model", help="faster-whisper model reference"),
) -> None:
    """Run a stream-processing worker (joins the consumer group; run several to scale out)."""
    from streams.worker import run_worker

    run_worker(load_settings(kafka_bootstrap_servers=bootstrap, web_port=web_port, web_host=web_host, model=model))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app()  # standalone mode: usage errors print themselves and exit 2
    except (CliFailure, ModelFileError, SettingsError) as error:
        typer.echo(f"callstt: error: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
