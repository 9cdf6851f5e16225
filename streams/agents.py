"""The downstream agents, registered once: what each reads and writes, and where its pages are.

A downstream agent reads what an earlier stage published and publishes what follows from it
(the translator: transcripts in, translations out; the speaker: translations in, speech out).
Its code is its core logic (a pure module) and its Faust app built on the kit in
streams/downstream.py (`build_agent_app`). This table is what everything else reads:

- the ACL table (streams/client/acls.py): its role may read `reads`, write `writes` and dead
  letters, create its own changelogs, and use its consumer group; the admin may create those;
- the topics a process makes when missing (its role's, through the ACL table);
- the kit: its app id suffix (consumer group, data folder, changelog prefix), its web port,
  its input topics (with the call-settings topic, co-partitioned), its metric names;
- its command (streams/cli.py `add_agent_command`: `callstt <name>` with --bootstrap,
  --web-port and its own options);
- the test and bench harness (streams/bench/subprocesses.py): its web-port variable;
- its deployment (scripts/manifests writes it from here, with its `PodPlan`): the Kubernetes
  Service, Deployment, KEDA scaler, network policy, changelog topic and ServiceMonitor, the
  compose service and the Prometheus job.

A new agent: its record schema (schemas/), its core and app modules, and one `AgentSpec` here
(docs/architecture.md: "Where new work goes").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from callstt.streams.settings import Settings

# The table of the calls' settings every agent keeps (streams/downstream.py CallSettingsTable).
CALL_SETTINGS_TABLE = "call-settings"


@dataclass(frozen=True)
class PodPlan:
    """What its pods need (scripts/manifests writes the Deployment, the KEDA scaler and the compose
    service from it). The memory figures cover its peak in docs/benchmark.md (a test checks)."""

    cpu_request: str  # "250m"
    memory_request: str  # "384Mi": at least the benchmarked peak RSS
    memory_limit: str  # at least 1.5 times that peak
    sizing: str  # why these figures (a comment above them)
    lag_threshold: int  # KEDA adds a pod per this many unread records of its first input
    lag_note: str  # what that lag means in time (a comment beside it)
    # (variable, value, why) set on its Kubernetes pods and on its compose service respectively.
    pod_env: tuple[tuple[str, str, str], ...] = ()
    compose_env: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class AgentSpec:
    name: str  # "translator": its command, ACL role, logger (callstt.<name>), metric prefix, /health service
    suffix: str  # "translate": app id `<app id>-<suffix>` (consumer group), data folder, changelogs' prefix
    reads: Callable[[Settings], list[str]]  # its input topics (the call-settings topic besides)
    writes: Callable[[Settings], list[str]]  # its output topics (the dead-letter topic besides)
    web_port: str  # the Settings field of its web port
    loads: str  # what it loads at start, while /health answers 503 ("translation backends")
    role: str  # the ACL role's description (callstt acls)
    run: str  # "module:function" that runs it with a Settings (imported only when its command runs)
    app: str  # "module:function" that builds its Faust app from (settings, load) without running it
    summary: str  # its command's help (`callstt <name> --help`)
    # Its command's own options besides --bootstrap and --web-port: (flag, Settings field, help).
    options: tuple[tuple[str, str, str], ...] = ()
    pod: PodPlan | None = None  # its deployment; an agent without one is not deployed by infra/

    def app_id(self, settings: Settings) -> str:
        return f"{settings.app_id}-{self.suffix}"

    def changelog_prefix(self, settings: Settings) -> str:
        """Every changelog of its tables starts with this (Faust: <app id>-<table>-changelog)."""
        return f"{self.app_id(settings)}-"

    def call_settings_changelog(self, settings: Settings) -> str:
        return f"{self.changelog_prefix(settings)}{CALL_SETTINGS_TABLE}-changelog"


TRANSLATOR = AgentSpec(
    name="translator", suffix="translate",
    reads=lambda s: [s.transcript_topic, s.partial_topic],
    writes=lambda s: [s.translation_topic, s.partial_translation_topic],
    web_port="translator_web_port", loads="translation backends",
    role="callstt translator: reads transcripts, interims and call settings; writes translations and dead letters",
    run="callstt.streams.translation.app:run_translator",
    app="callstt.streams.translation.app:create_translation_app",
    summary="Run the translation agent: transcripts in, Translation events out (its own consumer group).",
    options=(("--translate-to", "translate_to", "Default target languages, e.g. pt,en (default CALLSTT_TRANSLATE_TO; "
                                                "a call's settings override it)"),),
    pod=PodPlan(
        cpu_request="250m", memory_request="384Mi", memory_limit="768Mi",
        sizing="docs/benchmark.md, the translation chain (2026-12-03): translator peak RSS 284-286 MB; 5-15 ms of "
               "backend time per sentence. CTranslate2 models (NLLB-200, opus-mt) need more memory: raise the "
               "limit with them.",
        lag_threshold=100,
        lag_note="Final transcripts waiting: about a second of backend time at 5-15 ms per translation and "
                 "target (docs/benchmark.md). A call makes about 0.25 finals per second.",
        pod_env=(("CALLSTT_TRANSLATION_BACKENDS", "bergamot",
                  "The packaged English<->Portuguese models (docs/agents.md: \"What ships offline\")."),
                 ("CALLSTT_TRANSLATE_TO", "", "Targets for calls whose settings name none: none (each call asks "
                                              "for its own).")),
        compose_env=(("CALLSTT_TRANSLATE_TO", "pt", "for calls whose settings name no target"),)))

SPEAKER = AgentSpec(
    name="speaker", suffix="speak",
    reads=lambda s: [s.translation_topic],
    writes=lambda s: [s.speech_topic],
    web_port="speaker_web_port", loads="voices",
    role="callstt speaker: reads translations and call settings; writes speech and dead letters",
    run="callstt.streams.speech.app:run_speaker",
    app="callstt.streams.speech.app:create_speech_app",
    summary="Run the speech agent: translations in, synthesized speech (AudioChunk events) out.",
    pod=PodPlan(
        cpu_request="250m", memory_request="192Mi", memory_limit="384Mi",
        sizing="docs/benchmark.md, the translation chain (2026-12-03): speaker peak RSS 122 MB (its espeak-ng "
               "runs are child processes, counted in the pod's memory too); about 0.1 s to the first spoken "
               "sentence.",
        lag_threshold=20,
        lag_note="Translations waiting: a few seconds of espeak-ng work (about 0.1 s per sentence)."))

AGENTS = (TRANSLATOR, SPEAKER)
