"""The command line of the project's local Apache Kafka broker (KRaft, no Docker).

The broker itself (fetching the jars, formatting, starting, waiting, stopping) is
infra/local/kafka.py (`from infra.local.kafka import LocalKafka`), what the tests and the
benchmark use; this is its command line, for docs/development.md and scripts/setup, demo and stop.
Data, logs and pid files live under `.local/kafka/` (ignored by git).

    python scripts/kafka_local.py start              # one broker on 127.0.0.1:9092
    python scripts/kafka_local.py start --brokers 3 --name cluster --port 19192
    python scripts/kafka_local.py start --name tls --port 19292 --tls   # + a TLS listener
    python scripts/kafka_local.py status
    python scripts/kafka_local.py stop
"""

from __future__ import annotations

import sys

import typer

from callstt.infra.local.kafka import BrokerError, LocalKafka, fetch_jars, say

cli = typer.Typer(help="Run the project's local Apache Kafka broker (KRaft, no Docker).", no_args_is_help=True)
NameOption = typer.Option("dev", "--name", help="Cluster name: its data lives in .local/kafka/NAME/")
BrokersOption = typer.Option(1, "--brokers", min=1, max=9, help="Number of broker+controller nodes")
PortOption = typer.Option(9092, "--port", help="Client port of node 1; node i uses PORT+i-1")


@cli.command()
def fetch() -> None:
    """Download the Kafka jars from Maven Central (cached)."""
    fetch_jars()


@cli.command()
def start(name: str = NameOption, brokers: int = BrokersOption, port: int = PortOption,
          tls: bool = typer.Option(False, "--tls", help="Also listen with TLS on PORT+3*BROKERS+i-1 "
                                   "(a throwaway CA; its PEM is printed for CALLSTT_KAFKA_SSL_CAFILE)")) -> None:
    """Start the broker(s) if not running and wait until they answer."""
    cluster = LocalKafka(name, brokers, port, tls=tls)
    print(cluster.start())
    if tls:
        print(f"TLS: {cluster.ssl_bootstrap_servers} (CA file {cluster.ca_file})")


@cli.command()
def stop(name: str = NameOption, brokers: int = BrokersOption, port: int = PortOption,
         wipe: bool = typer.Option(False, help="Also delete the cluster's data")) -> None:
    """Stop the broker(s) by pid."""
    cluster = LocalKafka(name, brokers, port)
    cluster.wipe() if wipe else cluster.stop()


@cli.command()
def status(name: str = NameOption, brokers: int = BrokersOption, port: int = PortOption) -> None:
    """Print which nodes are running; exit 1 when none is."""
    cluster = LocalKafka(name, brokers, port)
    running = cluster.running()
    for node in cluster.nodes:
        state = f"running (pid {node.pid()})" if node.node_id in running else "stopped"
        print(f"node {node.node_id} 127.0.0.1:{node.broker_port}: {state}")
    raise typer.Exit(0 if running else 1)


def main() -> None:
    try:
        cli()
    except BrokerError as error:
        say(f"error: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
