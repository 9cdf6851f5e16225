"""The command line of the project's local Apicurio Schema Registry (no Docker).

The registry itself (fetching and unpacking Apicurio's Quarkus distribution from Maven
Central, starting it with in-memory storage, waiting for its Confluent-compatible API,
stopping it by pid) is infra/local/registry.py
(`from infra.local.registry import LocalSchemaRegistry`), what the tests use; this is its
command line. Files live under `.local/apicurio/` (ignored by git).

    python scripts/schema_registry.py fetch           # download + unpack (cached)
    python scripts/schema_registry.py start           # http://127.0.0.1:8081/apis/ccompat/v7
    python scripts/schema_registry.py start --port 18081
    python scripts/schema_registry.py status
    python scripts/schema_registry.py stop

Storage is in memory: every start is an empty registry (ids start again from 1).
"""

from __future__ import annotations

import sys
import time

import typer

from callstt.infra.local.registry import (DEFAULT_PORT, REPO_ROOT, VERSION, LocalSchemaRegistry, RegistryError,
                                          fetch_dist, say)

cli = typer.Typer(help="Run the project's local Apicurio Schema Registry (no Docker).", no_args_is_help=True)
PortOption = typer.Option(DEFAULT_PORT, "--port", help="HTTP port on 127.0.0.1")
VersionOption = typer.Option(VERSION, "--version", help="apicurio-registry-app version on Maven Central")


@cli.command()
def fetch(version: str = VersionOption) -> None:
    """Download and unpack the registry from Maven Central (cached)."""
    started = time.monotonic()
    runner = fetch_dist(version)
    say(f"{runner.relative_to(REPO_ROOT)} ready in {time.monotonic() - started:.1f}s")


@cli.command()
def start(port: int = PortOption, version: str = VersionOption) -> None:
    """Start the registry if not running and wait until it answers; print its ccompat URL."""
    started = time.monotonic()
    url = LocalSchemaRegistry(port, version).start()
    say(f"answered after {time.monotonic() - started:.1f}s")
    print(url)


@cli.command()
def stop(port: int = PortOption) -> None:
    """Stop the registry by pid."""
    LocalSchemaRegistry(port).stop()


@cli.command()
def status(port: int = PortOption) -> None:
    """Print whether the registry runs; exit 1 when it does not."""
    registry = LocalSchemaRegistry(port)
    pid = registry.pid()
    print(f"{registry.url}: {'running (pid %d)' % pid if pid else 'stopped'}")
    raise typer.Exit(0 if pid else 1)


def main() -> None:
    try:
        cli()
    except RegistryError as error:
        say(f"error: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
