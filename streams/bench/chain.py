"""The translation chain at live pace (`callstt bench --chain`): K English conversations streamed
in real time through the transcriber, the translator (into Portuguese, the pair that ships
offline) and the speaker, each its own subprocess on one broker as a deployment runs them, and
per utterance

    end of speech -> final transcript received -> translation received -> first speech chunk received

p50/p95 per stage and end to end, against the 1.5 s from a speaker's words to the translated
voice that the system this project replaces aimed at. "End of speech" is what the live section
counts from: the capture time of the utterance's last audio (so the endpoint's silence
hangover is inside the first stage). Times are when the bench's own readers received each
record, on one machine clock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from callstt.schemas.codec import AvroCodec
from callstt.schemas.records import spoken_utterance
from callstt.streams.bench.collecting import Arrival, RecordCollector
from callstt.streams.bench.sections import _live_jobs, conversation_accuracy
from callstt.streams.bench.stats import _r, summary
from callstt.streams.bench.subprocesses import WorkerSubprocess
from callstt.streams.bench.workload import ENCODING, TELEPHONE_RATE, Conversation
from callstt.streams.client.producer import OWN_CHUNK_PLAN, PLATFORM_CHUNK_MS, CallPublisher, ChunkPlan
from callstt.streams.client.publishing import send_calls
from callstt.streams.client.reader import TranscriptReader

log = logging.getLogger("callstt.bench")

CHAIN_TARGET_S = 1.5
CHAIN_CALLS = [1, 2, 4]
TARGET_LANGUAGE = "pt"  # English -> Portuguese: the pair the packaged Bergamot models translate
STAGES = ("end_of_speech_to_transcript_s", "transcript_to_translation_s", "translation_to_first_audio_s",
          "end_to_end_s")


def chain_processes(bootstrap: str, data_root: Path, worker_env: dict[str, str]) -> list[WorkerSubprocess]:
    """The transcriber, the translator and the speaker, sharing one name (so one set of topics),
    each with its own consumer group, data folder and web port."""
    name = f"chain{uuid.uuid4().hex[:8]}"
    return [WorkerSubprocess(bootstrap, data_root, name=name, extra_env=worker_env),
            WorkerSubprocess(bootstrap, data_root, name=name, command="translator",
                             extra_env={"CALLSTT_TRANSLATE_TO": TARGET_LANGUAGE}),
            WorkerSubprocess(bootstrap, data_root, name=name, command="speaker")]


def run_chain(processes: list[WorkerSubprocess], pool: list[Conversation], calls: list[int], seed: int,
              run_id: str) -> dict[str, Any]:
    """The chain section: its processes started (and stopped by the caller), one live run per K."""
    english = [call for call in pool if call.language == "en"] or pool
    for process in processes:
        log.info("chain: starting %s", process.command)
        process.start(timeout=180)
    report: dict[str, Any] = {"target_language": TARGET_LANGUAGE, "target_s": CHAIN_TARGET_S, "live": []}
    for k in calls:
        log.info("chain: %d calls at real-time pace", k)
        report["live"].append(run_chain_live(processes[0], english, k, seed, run_id))
    report["translator_rss_mb"] = processes[1].memory().get("VmHWM")
    report["speaker_rss_mb"] = processes[2].memory().get("VmHWM")
    return report


def run_chain_live(worker: WorkerSubprocess, pool: list[Conversation], k: int, seed: int,
                   run_id: str) -> dict[str, Any]:
    """K conversations at real-time pace; the finals, translations and speech chunks of those calls
    read as they arrive, until all three topics stay quiet for 10 s after publishing ended."""
    jobs, by_id = _live_jobs(pool, k, seed, f"{run_id}-chain")
    wanted, codec = set(by_id), AvroCodec()
    deadline = time.monotonic() + max(call.seconds for call in by_id.values()) + 180.0

    def reader(topic: str, decode=None) -> TranscriptReader:
        return TranscriptReader(worker.bootstrap, topic, from_beginning=True, codec=codec, decode=decode)

    collectors = [
        RecordCollector(reader(worker.transcript_topic), lambda t: t.call_id in wanted and t.is_final, deadline,
                        name="finals"),
        RecordCollector(reader(worker.translation_topic, codec.decode_translation), lambda t: t.call_id in wanted,
                        deadline, name="translations"),
        RecordCollector(reader(worker.speech_topic, codec.decode_chunk), lambda c: c.call_id in wanted, deadline,
                        name="speech")]
    for collector in collectors:
        collector.start()
    publisher = CallPublisher(worker.bootstrap, worker.audio_topic)
    producing = threading.Thread(target=lambda: (send_calls(publisher, jobs, ChunkPlan(TELEPHONE_RATE, ENCODING, PLATFORM_CHUNK_MS),
                                                            realtime=True), publisher.flush()), daemon=True)
    producing.start()
    try:
        wait_until_quiet(collectors, producing, deadline)
    finally:
        for collector in collectors:
            collector.stop()
    finals, translations, speech = (collector.arrivals for collector in collectors)
    # The transcripts' own accuracy beside the latencies (the live section's measure).
    return {"calls": k, **chain_figures(finals, translations, speech),
            "accuracy": conversation_accuracy(by_id, finals)}


def wait_until_quiet(collectors: list[RecordCollector], producing: threading.Thread, deadline: float,
                     quiet_s: float = 10.0) -> None:
    counts, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        now_counts = [len(collector.arrivals) for collector in collectors]
        if now_counts != counts:
            counts, last_change = now_counts, time.monotonic()
        if not producing.is_alive() and time.monotonic() - last_change >= quiet_s:
            return
        time.sleep(0.5)


def chain_figures(finals: list[Arrival], translations: list[Arrival], speech: list[Arrival]) -> dict[str, Any]:
    """Per utterance the four delays (s), joined by transcript id and by the translated leg's
    chunk numbers (streams/speech/core.py: utterance_index * SEQ_PER_UTTERANCE + n); their
    summaries, what is missing, and the share of utterances within the target end to end."""
    first_final = first_arrivals(finals, lambda t: t.transcript_id)
    first_translation = first_arrivals(translations, lambda t: t.transcript_id)
    first_chunk = first_arrivals(speech, spoken_utterance)
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    statuses: dict[str, int] = {}
    missing_translation = missing_speech = 0
    for transcript_id, final in first_final.items():
        t = final.transcript
        translated = first_translation.get(transcript_id)
        if translated is None:
            missing_translation += 1
            continue
        status = translated.transcript.status.value.lower()
        statuses[status] = statuses.get(status, 0) + 1
        eos_ms = t.last_audio_capture_ts_ms
        stages["end_of_speech_to_transcript_s"].append((final.arrived_ms - eos_ms) / 1000)
        stages["transcript_to_translation_s"].append((translated.arrived_ms - final.arrived_ms) / 1000)
        if not translated.transcript.text.strip():
            continue  # nothing to say (unsupported pair, empty text): no audio expected
        chunk = first_chunk.get((t.call_id, f"{t.stream_id}>{translated.transcript.target_language}",
                                 t.utterance_index))
        if chunk is None:
            missing_speech += 1
            continue
        stages["translation_to_first_audio_s"].append((chunk.arrived_ms - translated.arrived_ms) / 1000)
        stages["end_to_end_s"].append((chunk.arrived_ms - eos_ms) / 1000)
    end_to_end = stages["end_to_end_s"]
    return {"transcripts": len(first_final), "translations": statuses, "missing_translation": missing_translation,
            "spoken": len(end_to_end), "missing_speech": missing_speech,
            "speech_seconds": _r(len({(a.transcript.call_id, a.transcript.stream_id, a.transcript.seq)
                                      for a in speech}) * OWN_CHUNK_PLAN.chunk_ms / 1000),
            **{name: summary(values) for name, values in stages.items()},
            "within_target_share": _r(sum(v <= CHAIN_TARGET_S for v in end_to_end) / len(end_to_end), 3)
            if end_to_end else None}


def first_arrivals(arrivals: list[Arrival], key) -> dict[Any, Arrival]:
    """The first arrival per key (a repeated record after a retry keeps its first time)."""
    first: dict[Any, Arrival] = {}
    for arrival in sorted(arrivals, key=lambda a: a.arrived_ms):
        first.setdefault(key(arrival.transcript), arrival)
    return first


def markdown_lines(chain: dict[str, Any]) -> list[str]:
    """The chain's table: one row per K, p50 / p95 of each stage in seconds."""
    lines = ["", f"## The translation chain (English -> {chain['target_language']}, live pace)", "",
             f"| K | utterances (spoken) | end of speech -> transcript | transcript -> translation | "
             f"translation -> first audio | **end to end** | share <= {chain['target_s']} s | missing | WER en |",
             "|---|---|---|---|---|---|---|---|---|"]
    for live in chain["live"]:
        cells = [f"{live[name]['p50']} / {live[name]['p95']}" for name in STAGES]
        lines.append(f"| {live['calls']} | {live['transcripts']} ({live['spoken']}) | {cells[0]} | {cells[1]} | "
                     f"{cells[2]} | **{cells[3]}** | {live['within_target_share']} | "
                     f"{live['missing_translation']} translations, {live['missing_speech']} speech | "
                     f"{live.get('accuracy', {}).get('wer_en')} |")
    lines.append(f"\np50 / p95 in seconds. Translator peak RSS {chain.get('translator_rss_mb')} MB, "
                 f"speaker {chain.get('speaker_rss_mb')} MB.")
    return lines
