"""`callstt`: the project's one console entry point; each subcommand is a thin shell over library code.

Exit codes scripts can test: 0 ok, 1 failure (one clear line on stderr), 2 usage error.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import fields
from datetime import datetime
from enum import Enum
from pathlib import Path

import typer
import yaml
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from callstt.models.asr.store import PACKAGED_MODELS, ModelFileError, resolve_model
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.schemas.errors import CallsttError
from callstt.schemas.records import Encoding
from callstt.streams.agents import AGENTS, AgentSpec
from callstt.streams.client.acls import (ROLES, acl_bindings, apply_acls, grants, kafka_acls_commands,
                                         strimzi_kafka_users)
from callstt.streams.client.call_settings import build_call_settings, publish_call_settings, stream_options
from callstt.streams.client.kafka import avro_codec, confluent_config
from callstt.streams.client.producer import PLATFORM_CHUNK_MS, ChunkPlan
from callstt.streams.client.publishing import (SAMPLE_RATES, ClientErrors, InputError, PublishError, check_topic,
                                               load_inputs, plan_calls)
from callstt.streams.client.publishing import publish as publish_calls
from callstt.streams.client.tailing import (TailError, TranscriptTail, format_spoken, format_transcript,
                                            format_translation, parse_since, plain_lines, show_live, spoken_utterances)
from callstt.streams.client.topics import (TopicLayoutError, TopicsNotReady, ensure_topics, project_topics,
                                           worker_changelog_topic)
from callstt.streams.core_from_settings import build_pipeline
from callstt.streams.lifecycle import StartError
from callstt.streams.settings import Settings, SettingsError

app = typer.Typer(help="Speech-to-text stream processor for live calls (Kafka in, Avro transcripts out).",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def callstt() -> None:
    """Settings come from the environment (CALLSTT_*, plus the old service's names); flags override them."""


class CliFailure(CallsttError):
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
        # loaded when this command runs: the CLI starts without the models, Faust or the bench
        from callstt.models.asr.faster_whisper_backend import FasterWhisperBackend

        FasterWhisperBackend(directory, settings.model, settings.device, settings.compute_type, settings.cpu_threads)
        typer.echo(f"loaded {settings.model} ({settings.compute_type} on {settings.device})")


@app.command("settings")
def show_settings(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per setting instead of a table"),
) -> None:
    """Every setting: its environment variables, the value in effect now (secrets masked) and its meaning."""
    settings = load_settings()
    values = settings.describe()
    rows = [{"name": f.name, "env": list(f.metadata["env"]), "value": values[f.name], "default": f.default,
             "doc": f.metadata["doc"]} for f in fields(Settings)]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, default=str))
        return

    table = Table("variable", "value", "meaning", show_lines=False)
    for row in rows:
        table.add_row(" / ".join(row["env"]), str(row["value"]), row["doc"])
    Console(width=max(120, Console().width)).print(table)


@app.command()
def worker(
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    web_port: int = typer.Option(None, "--web-port", help="Port of the worker's web pages"),
    web_host: str = typer.Option(None, "--web-host", help="Bind address of the web pages"),
    model: str = typer.Option(None, "--model", help="faster-whisper model reference"),
) -> None:
    """Run a stream-processing worker (joins the consumer group; run several to scale out)."""
    # loaded when this command runs: the CLI starts without the models, Faust or the bench
    from callstt.streams.worker.runner import run_worker

    run_worker(load_settings(kafka_bootstrap_servers=bootstrap, web_port=web_port, web_host=web_host, model=model))


@app.command()
def gateway(
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    port: int = typer.Option(None, "--port", help="Port of /v1/listen and the listening page"),
    host: str = typer.Option(None, "--host", help="Bind address"),
) -> None:
    """Run a WebSocket gateway: clients speak Deepgram's live API (/v1/listen), Kafka behind it."""
    from callstt.streams.gateway.server import run_gateway

    run_gateway(load_settings(kafka_bootstrap_servers=bootstrap, gateway_port=port, gateway_host=host))


def add_agent_command(agent: AgentSpec) -> None:
    """`callstt <agent>`: run one downstream agent (streams/agents.py), with --bootstrap, --web-port
    and the agent's own options, each overriding its setting."""

    def run_agent(bootstrap: str | None, web_port: int | None, **options: str | None) -> None:
        module, function = agent.run.split(":")
        # loaded when this command runs: the CLI starts without the models, Faust or the bench
        run = getattr(importlib.import_module(module), function)
        run(load_settings(kafka_bootstrap_servers=bootstrap, **{agent.web_port: web_port}, **options))

    def option(name: str, kind: type, flag: str, help: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                 default=typer.Option(None, flag, help=help))

    parameters = [option("bootstrap", str, "--bootstrap", "Kafka bootstrap servers"),
                  option("web_port", int, "--web-port", f"Port of the {agent.name}'s web pages"),
                  *(option(field, str, flag, help) for flag, field, help in agent.options)]
    run_agent.__signature__ = inspect.Signature(parameters)  # what typer reads for the options
    run_agent.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    run_agent.__doc__ = agent.summary
    app.command(agent.name)(run_agent)


for registered in AGENTS:
    add_agent_command(registered)


# --- publish ---------------------------------------------------------------------------------

def _sample_rate(value: int) -> int:
    if value not in SAMPLE_RATES:
        raise typer.BadParameter(f"{value} is not one of {', '.join(map(str, SAMPLE_RATES))}")
    return value


@app.command()
def publish(
    inputs: list[Path] = typer.Argument(None, metavar="FILE_OR_DIR", show_default=False,
                                        help="Audio files (anything ffmpeg reads) or directories of them; "
                                             "each is one call"),
    say: list[str] = typer.Option(None, "--say", metavar="TEXT", show_default=False,
                                  help="Synthesize TEXT with espeak-ng as one more call (repeatable)"),
    language: str = typer.Option(None, "--language", show_default=False,
                                 help="Language of --say (default en); when given also sent as the chunks' "
                                      "language hint"),
    call_id: str = typer.Option(None, "--call-id", show_default=False,
                                help="Call id (default call-<8 hex>); several calls get -1, -2, ... appended"),
    stream_id: str = typer.Option("caller", "--stream-id", help="Stream (participant leg) id"),
    chunk_ms: int = typer.Option(PLATFORM_CHUNK_MS, "--chunk-ms", min=1, max=10000, help="Milliseconds of audio per chunk"),
    sample_rate: int = typer.Option(SAMPLE_RATE, "--sample-rate", callback=_sample_rate, help="8000, 16000 or 48000"),
    encoding: Encoding = typer.Option(Encoding.PCM_S16LE, "--encoding", help="Payload encoding"),
    realtime: bool = typer.Option(False, "--realtime/--fast", help="Pace chunks at real time, or send at once"),
    calls: int = typer.Option(None, "--calls", min=1, show_default=False,
                              help="Simulate N concurrent calls cycling over the inputs (default: one per input)"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    topic: str = typer.Option(None, "--topic", help="Audio topic (default CALLSTT_AUDIO_TOPIC)"),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds the broker may stay silent before failing"),
) -> None:
    """Publish audio files or synthesized speech as simulated calls (AudioChunk events).

    Prints one line per call when the broker has acknowledged every chunk:
    call id, stream, seconds of audio, chunks, source.
    """
    if not inputs and not say:
        raise typer.BadParameter("give audio files or directories, or --say TEXT", param_hint="FILE_OR_DIR")
    settings = load_settings(kafka_bootstrap_servers=bootstrap, audio_topic=topic)
    plan = ChunkPlan(sample_rate=sample_rate, encoding=encoding.value, chunk_ms=chunk_ms)
    stderr = Console(stderr=True)
    live = stderr.is_terminal  # progress only where someone watches: pipes and logs get just the result
    try:
        with stderr.status("loading audio...", spinner="dots") if live else nullcontext():
            sources = load_inputs(inputs or (), say or (), language=language or "en", sample_rate=sample_rate)
        jobs = plan_calls(sources, calls, call_id, stream_id, language)
        total = sum(job.chunk_count(plan) for job in jobs)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                   TimeRemainingColumn())
        with Progress(*columns, console=stderr, transient=True, disable=not live) as progress:
            task = progress.add_task(f"publishing {len(jobs)} call(s) to {settings.audio_topic}", total=total)
            results = publish_calls(settings.kafka_bootstrap_servers, settings.audio_topic, jobs, plan,
                                    realtime=realtime, timeout=timeout,
                                    codec=avro_codec(settings),
                                    on_chunk=lambda job: progress.advance(task),
                                    client_config=confluent_config(settings))
    except (InputError, PublishError) as error:
        raise CliFailure(str(error)) from None
    width = max(len(result.call_id) for result in results)
    for result in results:
        typer.echo(f"{result.call_id:<{width}}  {result.stream_id}  {result.seconds:7.2f} s  "
                   f"{result.chunks:6d} chunks  {result.source}")


# --- call-settings ---------------------------------------------------------------------------

call_settings_app = typer.Typer(help="Per-call options (languages, vocabulary, redaction) on the compacted "
                                     "call-settings topic, keyed by call ID.", no_args_is_help=True)
app.add_typer(call_settings_app, name="call-settings")


@call_settings_app.command("set")
def call_settings_set(
    call_id: str = typer.Argument(..., metavar="CALL", help="The call's ID (the audio chunks' key)"),
    languages: str = typer.Option(None, "--languages", show_default=False,
                                  help="Languages the call may be in, e.g. vi,en ('' = any)"),
    hotwords: str = typer.Option(None, "--hotwords", show_default=False,
                                 help="Words to expect, comma-separated (product names, surnames; '' = none)"),
    prompt: str = typer.Option(None, "--prompt", show_default=False, help="Context text for the model ('' = none)"),
    redact: str = typer.Option(None, "--redact", show_default=False,
                               help="What to redact: card,phone,email,id or all ('' = nothing)"),
    stream_languages: list[str] = typer.Option(None, "--stream-languages", metavar="STREAM=CODES", show_default=False,
                                               help="Languages of one stream, over the call's (repeatable)"),
    stream_hotwords: list[str] = typer.Option(None, "--stream-hotwords", metavar="STREAM=WORDS", show_default=False,
                                              help="Words one stream should expect (repeatable)"),
    stream_prompts: list[str] = typer.Option(None, "--stream-prompt", metavar="STREAM=TEXT", show_default=False,
                                             help="Context text for one stream (repeatable)"),
    translate_to: str = typer.Option(None, "--translate-to", show_default=False,
                                     help="Languages the translation agent translates the call into, e.g. pt "
                                          "('' = none)"),
    stream_translate_to: list[str] = typer.Option(None, "--stream-translate-to", metavar="STREAM=CODES",
                                                  show_default=False, help="Target languages of one stream "
                                                  "(repeatable)"),
    translate_interims: bool = typer.Option(None, "--translate-interims/--no-translate-interims", show_default=False,
                                            help="Also translate the stable words of interim transcripts (default "
                                                 "CALLSTT_TRANSLATE_INTERIMS)"),
    voice: str = typer.Option(None, "--voice", show_default=False,
                              help="The speech agent's voice for the call, by id (e.g. joe, espeak-ng: one the "
                                   "speaker has for the target language; default: the language's first)"),
    stream_voices: list[str] = typer.Option(None, "--stream-voice", metavar="STREAM=VOICE", show_default=False,
                                            help="The voice of one stream's translations (repeatable)"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    topic: str = typer.Option(None, "--topic", help="Call-settings topic (default CALLSTT_CALL_SETTINGS_TOPIC)"),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for the broker"),
) -> None:
    """Publish a call's settings (replacing any earlier ones); options not given fall back to the
    worker's defaults. Prints the record published, as JSON."""
    # loaded when this command runs: the CLI starts without the models, Faust or the bench
    from callstt.streams.core.pipeline import Rejected

    settings = load_settings(kafka_bootstrap_servers=bootstrap, call_settings_topic=topic)
    try:
        record = build_call_settings(call_id, languages, hotwords, prompt, redact,
                                     stream_options(stream_languages or [], "--stream-languages"),
                                     stream_options(stream_hotwords or [], "--stream-hotwords"),
                                     stream_options(stream_prompts or [], "--stream-prompt"), translate_to,
                                     stream_options(stream_translate_to or [], "--stream-translate-to"),
                                     translate_interims, voice, stream_options(stream_voices or [], "--stream-voice"))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    # Checked as the worker will check it (a record it would dead-letter is never published).
    checked = build_pipeline(settings).decode_call_settings(
        call_id, _codec(settings).encode_call_settings(record, settings.call_settings_topic))
    if isinstance(checked, Rejected):
        raise typer.BadParameter(checked.detail)
    try:
        publish_call_settings(settings, record, timeout=timeout)
    except PublishError as error:
        raise CliFailure(str(error)) from None
    typer.echo(json.dumps(record.to_dict(), ensure_ascii=False))


@call_settings_app.command("clear")
def call_settings_clear(
    call_id: str = typer.Argument(..., metavar="CALL", help="The call's ID"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    topic: str = typer.Option(None, "--topic", help="Call-settings topic (default CALLSTT_CALL_SETTINGS_TOPIC)"),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for the broker"),
) -> None:
    """Forget a call's settings (a tombstone): the worker's defaults apply again."""
    settings = load_settings(kafka_bootstrap_servers=bootstrap, call_settings_topic=topic)
    try:
        publish_call_settings(settings, None, call_id=call_id, timeout=timeout)
    except PublishError as error:
        raise CliFailure(str(error)) from None
    typer.echo(f"cleared {call_id}")


def _codec(settings: Settings):
    return avro_codec(settings)


# --- tail ------------------------------------------------------------------------------------

def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None


def _show_transcripts(transcripts, as_json: bool, partials: bool) -> None:
    """Write what `tail` follows: JSON lines (every record, interims too, in arrival order), the
    live view of the open utterances (--partials on a terminal) or one line per transcript."""
    if as_json:
        for transcript in transcripts:
            typer.echo(json.dumps(transcript.to_dict(), ensure_ascii=False))
    elif partials and sys.stdout.isatty():
        show_live(transcripts, Console())
    else:  # piped: lines, so `| grep` and `> file` work; interims (if any) marked `~`
        for line in (plain_lines(transcripts) if partials else map(format_transcript, transcripts)):
            typer.echo(line)


def _show_downstream(records, as_json: bool, speech: bool) -> None:
    """Write what `tail --translations` (a line or JSON object per translation) or `tail --speech`
    (one per translated utterance's speech) follows."""
    shown = spoken_utterances(records) if speech else records
    for record in shown:
        typer.echo(json.dumps(record.to_dict(), ensure_ascii=False) if as_json
                   else format_spoken(record) if speech else format_translation(record))


@app.command()
def tail(
    call: str = typer.Option(None, "--call", metavar="ID", show_default=False, help="Only this call's transcripts"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line (the Transcript schema's fields)"),
    partials: bool = typer.Option(False, "--partials", help="Also follow the interim transcripts: a live view "
                                  "of the open utterances on a terminal, lines marked ~ when piped, all with --json"),
    translations: bool = typer.Option(False, "--translations", help="Follow the translations instead "
                                      "(CALLSTT_TRANSLATION_TOPIC): one line each, with the language pair and any "
                                      "status other than OK (e.g. unsupported_pair)"),
    speech: bool = typer.Option(False, "--speech", help="Follow the synthesized speech instead "
                                "(CALLSTT_SPEECH_TOPIC): per translated utterance, its chunks and seconds of audio, "
                                "once the leg's next utterance starts (the rest when --idle-exit ends it)"),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest kept transcript"),
    since: str = typer.Option(None, "--since", metavar="TIME", show_default=False,
                              help="Start at TIME: ISO-8601 (2024-05-01T09:30) or ago (30s, 10m, 2h, 1d)"),
    idle_exit: float = typer.Option(None, "--idle-exit", metavar="SECONDS", min=0, show_default=False,
                                    help="Exit 0 after SECONDS without a new transcript"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    topic: str = typer.Option(None, "--topic", help="Transcript topic (default CALLSTT_TRANSCRIPT_TOPIC; the "
                              "translation or speech topic with --translations or --speech)"),
    partial_topic: str = typer.Option(None, "--partial-topic",
                                      help="Partial-transcript topic, with --partials (default CALLSTT_PARTIAL_TOPIC)"),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for the broker before failing"),
) -> None:
    """Follow the transcripts: one line each (local time, call, stream, language, text), or JSON;
    or, with --translations or --speech, what the translation and speech agents publish.

    Starts at new transcripts unless --from-beginning or --since. Ctrl-C stops it (exit 0).
    """
    start_at = _since(since)
    if start_at is not None and from_beginning:
        raise typer.BadParameter("use --since or --from-beginning, not both", param_hint="--since")
    if partial_topic is not None and not partials:
        raise typer.BadParameter("--partial-topic needs --partials", param_hint="--partial-topic")
    if partials + translations + speech > 1:
        raise typer.BadParameter("use one of --partials, --translations, --speech", param_hint="--translations")
    settings = load_settings(kafka_bootstrap_servers=bootstrap, partial_topic=partial_topic,
                             **{("translation_topic" if translations else "speech_topic" if speech
                                 else "transcript_topic"): topic})
    codec = avro_codec(settings)
    if translations or speech:
        topics = [settings.translation_topic if translations else settings.speech_topic]
        decode = codec.decode_translation if translations else codec.decode_chunk
    else:
        topics = [settings.transcript_topic, settings.partial_topic] if partials else [settings.transcript_topic]
        decode = codec.decode_transcript
    reader = None
    try:
        reader = TranscriptTail(settings.kafka_bootstrap_servers, topics,
                                start=start_at or ("beginning" if from_beginning else "end"),
                                codec=codec, timeout=timeout, extra_config=confluent_config(settings), decode=decode)
        records = reader.follow(idle_exit_s=idle_exit, call_id=call)
        if translations or speech:
            _show_downstream(records, as_json, speech)
        else:
            _show_transcripts(records, as_json, partials)
    except TailError as error:
        raise CliFailure(str(error)) from None
    except KafkaException as error:  # e.g. the time seek (offsets_for_times) in the assignment
        raise CliFailure(f"following {', '.join(topics)} failed: {error.args[0].str()}") from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None  # Ctrl-C: stop quietly
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, and point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    finally:
        if reader is not None:
            reader.close()


# --- topics ----------------------------------------------------------------------------------

class TopicsAction(str, Enum):
    create = "create"
    describe = "describe"


DESCRIBED_CONFIGS = ("retention.ms", "cleanup.policy", "min.insync.replicas")


@app.command()
def topics(
    action: TopicsAction = typer.Argument(TopicsAction.describe, help="create: create the missing project topics; "
                                          "describe: show them as the broker reports them"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    app_id: str = typer.Option(None, "--app-id", help="App id (names the control and changelog topics)"),
    partitions: int = typer.Option(None, "--partitions", min=1, show_default=False,
                                   help="Partitions for create (default CALLSTT_TOPIC_PARTITIONS)"),
    replication: int = typer.Option(None, "--replication", min=1, show_default=False,
                                    help="Replication factor for create (default CALLSTT_TOPIC_REPLICATION)"),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for the broker before failing"),
) -> None:
    """Create or describe the project's topics (audio, control, transcripts, dead letters, changelog).

    Topic names come from the settings (CALLSTT_AUDIO_TOPIC, ...).
    """
    settings = load_settings(kafka_bootstrap_servers=bootstrap, app_id=app_id, topic_partitions=partitions,
                             topic_replication=replication)
    errors = ClientErrors()
    admin = AdminClient({**confluent_config(settings), **errors.config()})
    try:
        check_topic(admin, settings.kafka_bootstrap_servers, None, timeout, errors)
        if action is TopicsAction.create:
            _create_topics(settings, timeout)
        else:
            _describe_topics(admin, settings, timeout)
    except PublishError as error:
        raise CliFailure(str(error)) from None
    except KafkaException as error:
        raise CliFailure(f"Kafka at {settings.kafka_bootstrap_servers}: {error.args[0].str()}") from None
    except TimeoutError:
        raise CliFailure(f"Kafka at {settings.kafka_bootstrap_servers} did not answer within {timeout:g}s") from None


def _create_topics(settings: Settings, timeout: float) -> None:
    with _librdkafka_stderr_silenced():
        created = set(ensure_topics(settings, timeout=timeout))
    for spec in project_topics(settings):
        if spec.name in created:
            typer.echo(f"created  {spec.name}  partitions={spec.partitions} replication={spec.replication}")
        else:
            typer.echo(f"exists   {spec.name}")


@contextmanager
def _librdkafka_stderr_silenced():
    """Keep librdkafka's own log lines (written straight to file descriptor 2) off stderr.

    ensure_topics' AdminClient has no logger configured, and when it is destroyed right after its
    requests it sometimes logs 'BGQUEUE ... Purging 1 unserved events'. Its failures still arrive
    as exceptions, printed (after this) as our one line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            gc.collect()  # destroy the client while stderr is still quiet
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _describe_topics(admin, settings: Settings, timeout: float) -> None:
    names = [spec.name for spec in project_topics(settings)]
    existing = admin.list_topics(timeout=timeout).topics
    if worker_changelog_topic(settings) in existing:
        names.append(worker_changelog_topic(settings))
    present = [name for name in names if name in existing]
    descriptions = admin.describe_topics(TopicCollection(present), request_timeout=timeout) if present else {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in present]
    configs = admin.describe_configs(resources, request_timeout=timeout) if present else {}
    configs_by_name = {resource.name: future for resource, future in configs.items()}
    width = max(len(name) for name in names)
    for name in names:
        if name not in existing:
            typer.echo(f"{name:<{width}}  missing (run: callstt topics create)")
            continue
        try:
            description = descriptions[name].result(timeout=timeout)
            entries = configs_by_name[name].result(timeout=timeout)
        except KafkaException as error:
            if error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                typer.echo(f"{name:<{width}}  missing (run: callstt topics create)")
                continue
            raise
        replicas = {len(partition.replicas) for partition in description.partitions}
        config_text = " ".join(f"{key}={entries[key].value if key in entries else '?'}" for key in DESCRIBED_CONFIGS)
        typer.echo(f"{name:<{width}}  partitions={len(description.partitions)} "
                   f"replication={'/'.join(map(str, sorted(replicas)))}  {config_text}")


class AclFormat(str, Enum):
    kafka_acls = "kafka-acls"
    strimzi = "strimzi"


@app.command()
def acls(
    roles: list[str] = typer.Option(None, "--role", show_default=False,
                                    help=f"A role (repeatable; default all): {', '.join(ROLES)}"),
    output: AclFormat = typer.Option(AclFormat.kafka_acls, "--format",
                                     help="kafka-acls: the kafka-acls.sh commands; strimzi: KafkaUser manifests"),
    user_prefix: str = typer.Option("callstt-", "--user-prefix", help="Each role's user is PREFIX + role"),
    cluster: str = typer.Option("callstt", "--cluster", help="The Strimzi Kafka cluster's name (strimzi format)"),
    apply: bool = typer.Option(False, "--apply", help="Add the ACLs on the broker now, as the principal the "
                               "settings connect with (it needs Alter on the cluster: a super user)"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds to wait for the broker (--apply)"),
) -> None:
    """Least-privilege Kafka ACLs, one principal per role, for the current settings' topic names
    and app id (docs/security.md): printed for kafka-acls.sh or Strimzi, or applied at once."""
    unknown = [role for role in roles or () if role not in ROLES]
    if unknown:
        raise typer.BadParameter(f"unknown role {unknown[0]!r}; known: {', '.join(ROLES)}", param_hint="--role")
    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    chosen = {role: grants(settings, role) for role in roles or ROLES}
    if apply:
        bindings = [binding for role, role_grants in chosen.items()
                    for binding in acl_bindings(f"User:{user_prefix}{role}", role_grants)]
        try:
            apply_acls(settings, bindings, timeout)
        except KafkaException as error:
            raise CliFailure(f"adding ACLs on {settings.kafka_bootstrap_servers} failed: {error.args[0].str()}") from None
        typer.echo(f"added {len(bindings)} ACLs for {', '.join(user_prefix + role for role in chosen)}")
    elif output is AclFormat.strimzi:
        typer.echo(yaml.safe_dump_all(strimzi_kafka_users(settings, list(chosen), user_prefix, cluster), sort_keys=False),
                   nl=False)
    else:
        for role, role_grants in chosen.items():
            typer.echo(f"# {user_prefix}{role}: {ROLES[role]}")
            for command in kafka_acls_commands(f"User:{user_prefix}{role}", role_grants,
                                               settings.kafka_bootstrap_servers):
                typer.echo(command)


@app.command()
def replay(
    output_topic: str = typer.Option(..., "--output-topic", help="Where replayed transcripts go, e.g. callstt.transcripts.v2"),
    calls: list[str] = typer.Option(None, "--call", help="A call to replay (repeatable); default: every call in the range"),
    since: str = typer.Option(None, "--since", help="Start of the range: ISO-8601 or a time ago (2h, 30m)"),
    until: str = typer.Option(None, "--until", help="End of the range: ISO-8601 or a time ago"),
    model: str = typer.Option(None, "--model", help="Model to replay through (default: MODEL_SIZE / CALLSTT_MODEL)"),
    model_version: str = typer.Option(None, "--model-version", help="Version label written into the transcripts"),
    rewind_group: str = typer.Option(None, "--rewind-group",
                                     help="Instead: move this (stopped) consumer group back to --since"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers"),
) -> None:
    """Reprocess calls from the audio topic through a chosen model into a chosen topic (never joins the
    live workers' group), or rewind a stopped worker group to a time for a full reprocess."""
    # loaded when this command runs: the CLI starts without the models, Faust or the bench
    from callstt.streams.model_routes import build_router
    from callstt.streams.replay import replay_calls
    from callstt.streams.replay import rewind_group as rewind

    settings = load_settings(kafka_bootstrap_servers=bootstrap, model=model, model_version=model_version)
    since_at, until_at = _since(since), _since(until)
    if rewind_group:
        if since_at is None:
            raise typer.BadParameter("--rewind-group needs --since", param_hint="--since")
        offsets = rewind(settings, rewind_group, int(since_at.timestamp() * 1000))
        for partition, offset in sorted(offsets.items()):
            typer.echo(f"{settings.audio_topic}[{partition}] -> offset {offset}")
        return
    router = build_router(settings)
    report = replay_calls(
        settings, router, output_topic, settings.model_version_label, call_ids=set(calls) if calls else None,
        since_ms=int(since_at.timestamp() * 1000) if since_at else None,
        until_ms=int(until_at.timestamp() * 1000) if until_at else None,
        on_transcript=lambda t: typer.echo(f"{t.call_id} {t.stream_id} #{t.utterance_index} [{t.language}] {t.text}"))
    typer.echo(f"replayed {len(report.calls)} call(s), {report.chunks} chunks -> {report.transcripts} transcripts "
               f"into {output_topic} (model version {settings.model_version_label}; "
               f"{report.rejected_chunks} rejected, {report.skipped_chunks} skipped)", err=True)


@app.command()
def convert(
    checkpoint: str = typer.Argument(..., help="transformers Whisper checkpoint: local directory or hub id"),
    output: Path = typer.Option(None, "--output", "-o", help="Output directory (default: the model cache)"),
    quantization: str = typer.Option("int8", "--quantization", "-q", help="int8, int8_float16, float16 or float32"),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory"),
    benchmark: bool = typer.Option(False, "--benchmark", help="Then time transformers against the converted model"),
) -> None:
    """Convert a transformers Whisper checkpoint (e.g. PhoWhisper) to CTranslate2 for the faster-whisper backend.

    The model cache and hub access come from the settings (CALLSTT_MODEL_CACHE_DIR, CALLSTT_ALLOW_HUB_DOWNLOAD).
    """
    # loaded when this command runs: the CLI starts without the models, Faust or the bench
    from callstt.models.asr.convert import main as convert_main

    settings = load_settings()
    argv = [checkpoint, "-q", quantization]
    argv += ["-o", str(output)] if output else []
    argv += ["--force"] if force else []
    argv += ["--benchmark"] if benchmark else []
    raise typer.Exit(convert_main(argv, allow_hub=settings.allow_hub_download, cache_dir=settings.model_cache_path))


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="K=1,2 conversations and K=1 sentences with pauses, ~15 s each: a few minutes (CI smoke check)"),
    output: Path = typer.Option(Path(".local/bench"), "--output", help="Folder for bench.json and bench.md"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="A running broker (default: its own on 127.0.0.1:39092)"),
    calls: str = typer.Option(None, "--calls", help="Live K values, comma-separated (default 1,2,4,8,12)"),
    live_seconds: float = typer.Option(None, "--live-seconds", help="Length of each live call (default 120; quick 15)"),
    model: str = typer.Option(None, "--model", help="Model reference (default: MODEL_SIZE / CALLSTT_MODEL)"),
    speech: Path = typer.Option(None, "--speech", help="Recordings with a manifest.tsv for the accuracy on real "
                                                       "speech (default: ../shared/speech when it exists)"),
    accuracy_only: bool = typer.Option(False, "--accuracy-only",
                                       help="Only the accuracy on real speech and language ID by length "
                                            "(no pipeline, live or capacity runs)"),
    windows: bool = typer.Option(False, "--windows", help="Only the encoder-window curve: WER and ms per "
                                                          "utterance by CALLSTT_MIN_WINDOW_S (no broker)"),
    partials: str = typer.Option(None, "--partials", metavar="on|off", show_default=False,
                                 help="Interim transcripts in the bench's worker (default: CALLSTT_PARTIAL_INTERVAL_MS)"),
    chain: bool = typer.Option(False, "--chain", help="Only the translation chain: transcriber, translator and "
                                                      "speaker at live pace, K=1,2,4 (end of speech -> first "
                                                      "translated audio)"),
    gateway: bool = typer.Option(False, "--gateway", help="Only the gateway: K=1,2,3 calls straight to Kafka "
                                                          "and the same K at once through `callstt gateway` (end of speech -> final "
                                                          "at the client, p50/p95 side by side)"),
) -> None:
    """Benchmark: pipeline overhead vs the model alone, live latency, capacity, memory, WER, inference modes,
    accuracy on real speech (from a source checkout)."""
    require_checkout("bench")
    # loaded when this command runs: the CLI starts without the models, Faust or the bench
    from callstt.streams.bench import markdown, run_bench

    try:
        live_calls = [int(k) for k in calls.split(",")] if calls else None
    except ValueError:
        raise typer.BadParameter("comma-separated integers, e.g. 1,2,4", param_hint="--calls") from None
    if partials not in (None, "on", "off"):
        raise typer.BadParameter("on or off", param_hint="--partials")
    report = run_bench(quick=quick, out_dir=output, bootstrap=bootstrap, settings=load_settings(model=model),
                       live_calls=live_calls, live_seconds=live_seconds, speech_dir=speech,
                       accuracy_only=accuracy_only, windows_only=windows, partials=partials, chain_only=chain,
                       gateway_only=gateway)
    typer.echo(markdown(report))


@app.command()
def soak(
    minutes: float = typer.Option(60.0, "--minutes", min=0.5, help="How long the calls go on"),
    calls: int = typer.Option(1, "--calls", min=1, help="Calls at a time (the bench's live capacity: 1 per "
                                                         "2-core worker)"),
    seed: int = typer.Option(1, "--seed", help="Call lengths and silences"),
    sample_every: float = typer.Option(60.0, "--sample-every", min=5.0, metavar="SECONDS",
                                       help="How often RSS, open files, state and changelog are sampled"),
    output: Path = typer.Option(Path(".local/soak"), "--output", help="Folder for soak.json and soak.md"),
    bootstrap: str = typer.Option(None, "--bootstrap", help="A running broker (default: the bench's own)"),
) -> None:
    """Soak test: CALLS calls at a time, back to back in real time with random lengths and silences,
    for MINUTES through one worker; every utterance must come back exactly once (after dropping
    duplicates by id), and RSS, open files, state and changelog are sampled over time (from a source
    checkout)."""
    require_checkout("soak")
    # loaded when this command runs: the CLI starts without the models, Faust or the bench
    from callstt.streams.bench.soak import markdown
    from callstt.streams.bench.soak import soak as run

    report = run(minutes, calls, seed, output, bootstrap, load_settings(), sample_every)
    typer.echo("\n".join(markdown(report)))
    if report["lost"]:
        raise CliFailure(f"{report['lost']} utterances lost")


def require_checkout(command: str) -> None:
    """The bench and its local broker ship only in a source checkout (setup.py leaves them out of
    the wheel): an installed callstt says so instead of a traceback."""
    if any(importlib.util.find_spec(name) is None for name in ("callstt.streams.bench", "callstt.infra.local")):
        raise CliFailure(f"`callstt {command}` runs from a source checkout of callstt (scripts/setup installs it "
                         "there): the installed package leaves the bench and its local broker out")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app()  # standalone mode: usage errors print themselves and exit 2
    except (CliFailure, ModelFileError, SettingsError, TopicsNotReady, TopicLayoutError, StartError) as error:
        typer.echo(f"callstt: error: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
