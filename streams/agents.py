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
- the test and bench harness (streams/bench/subprocesses.py): its web-port variable.

A new agent: its record schema (schemas/), its core and app modules, and one `AgentSpec` here
(docs/architecture.md: "Where new work goes").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from callstt.streams.settings import Settings


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
    summary: str  # its command's help (`callstt <name> --help`)
    # Its command's own options besides --bootstrap and --web-port: (flag, Settings field, help).
    options: tuple[tuple[str, str, str], ...] = ()

    def app_id(self, settings: Settings) -> str:
        return f"{settings.app_id}-{self.suffix}"

    def changelog_prefix(self, settings: Settings) -> str:
        """Every changelog of its tables starts with this (Faust: <app id>-<table>-changelog)."""
        return f"{self.app_id(settings)}-"


TRANSLATOR = AgentSpec(
    name="translator", suffix="translate",
    reads=lambda s: [s.transcript_topic, s.partial_topic],
    writes=lambda s: [s.translation_topic, s.partial_translation_topic],
    web_port="translator_web_port", loads="translation backends",
    role="callstt translator: reads transcripts, interims and call settings; writes translations and dead letters",
    run="callstt.streams.translation.app:run_translator",
    summary="Run the translation agent: transcripts in, Translation events out (its own consumer group).",
    options=(("--translate-to", "translate_to", "Default target languages, e.g. pt,en (default CALLSTT_TRANSLATE_TO; "
                                                "a call's settings override it)"),))

SPEAKER = AgentSpec(
    name="speaker", suffix="speak",
    reads=lambda s: [s.translation_topic],
    writes=lambda s: [s.speech_topic],
    web_port="speaker_web_port", loads="voices",
    role="callstt speaker: reads translations and call settings; writes speech and dead letters",
    run="callstt.streams.speech.app:run_speaker",
    summary="Run the speech agent: translations in, synthesized speech (AudioChunk events) out.")

AGENTS = (TRANSLATOR, SPEAKER)
