"""Accuracy on real speech: recordings with reference transcripts (`../shared/speech`, manifest.tsv)
through the model alone and through the worker, WER/CER and language ID per language, with and
without a call's language restriction; and language ID by utterance length and sample rate.

    clips = load_speech("../shared/speech")                 # None when the folder is absent
    section = run_accuracy(router, worker, clips, settings, run_id="ab12cd")
    lines = markdown_lines(section)                          # bench.md's "Accuracy on real speech"

- floor: each whole clip through `router.transcribe(audio, None)` (the model's own language
  detection, the worker's decoding settings);
- pipeline: each clip published as its own call (16 kHz PCM, 20 ms chunks, every call interleaved
  as fast as the producer can, no language hints) to the worker subprocess; its transcripts joined
  in utterance order; once more with `CallSettings(languages=restriction)` for the clips of those
  languages;
- lid_by_length: pieces of about 1, 2, 3, 5 s and the whole clip, at 16 kHz and through the
  telephone band (8 kHz mu-law decoded by the worker's own decoder), through the backend's
  `detect_language` (what the worker runs) and faster-whisper's full-window detection.

The recordings are read where they lie, never copied. Without them the per-language part is
skipped (the section says why) unless `AccuracyOptions.synthesized_when_absent` asks for espeak
sentences instead; the length table always runs, on espeak sentences at least.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from confluent_kafka import KafkaException

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.schemas.records import CallSettings
from callstt.streams.bench.collecting import collect
from callstt.streams.bench.corpus import (DEFAULT_SPEECH_DIR, TELEPHONE_RATE, SpeechClip, clip_audio, select,
                                          synthesized_clips, telephone_band)
from callstt.streams.bench.evaluation.guard_report import measure_guard
from callstt.streams.bench.evaluation.rare_words import measure as measure_rare_words
from callstt.streams.bench.evaluation.scoring import CER_LANGUAGES, error_rate
from callstt.streams.bench.redaction_set import measure_redaction
from callstt.streams.bench.stats import _r, metric_sum
from callstt.streams.client.call_settings import publish_call_settings
from callstt.streams.client.producer import PLATFORM_CHUNK_MS, CallPublisher, ChunkPlan
from callstt.streams.client.publishing import CallInput, CallJob, send_calls
from callstt.streams.client.reader import TranscriptReader
from callstt.streams.core_from_settings import pipeline_config

log = logging.getLogger("callstt.bench")

PIPELINE_ENCODING = "PCM_S16LE"  # the pipeline part publishes the recordings as they are
# The length table's columns: languages with many clips get their own, the rest share "other".
LID_COLUMNS = ("en", "vi")


@dataclass(frozen=True)
class AccuracyOptions:
    """What the section measures. Clip choices (see `select`): a mapping takes the first N clips of
    each language it names (the others left out), a number at most N of every language, None all.
    The length table detects twice per piece at two rates, about 2 s a piece on 2 busy cores: its
    default (8 clips of each language, 4 espeak sentences of each) keeps it near ten minutes."""

    lengths_s: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
    pieces_per_length: int = 1  # pieces of one length per clip, spread over its speech
    restriction: tuple[str, ...] = ("vi", "en")
    clips_per_language: Mapping[str, int] | int | None = None  # the floor and pipeline runs
    lid_clips_per_language: Mapping[str, int] | int | None = 8  # the length table's recordings
    espeak_in_lid: int = 4  # the bench's espeak sentences of each language in the length table too
    synthesized_when_absent: bool = False  # no recordings: espeak sentences as the clips (tests)
    synthetic_checks: bool = True  # vocabulary, redaction and invented-text sets (`synthetic_checks`), ~2 min


# --- floor: the model alone on each whole clip ---------------------------------------------------

def run_floor(router, clips: Sequence[SpeechClip], audio: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Each clip whole through `router.transcribe(audio, None)`: text and detected language by clip name."""
    results, started = {}, time.perf_counter()
    for clip in clips:
        result = router.transcribe(audio[clip.name], None)
        results[clip.name] = {"text": result.text, "language": result.language}
    return {"seconds": _r(time.perf_counter() - started), "clips": results}


# --- pipeline: each clip as a call through the worker ---------------------------------------------

class _WorkerDone:
    """`collect`'s on_poll: busy until the worker is done with every chunk sent and the reader has
    read what it published, seen on two scrapes in a row (at most one a second).

    Done, by the worker's own figures: every chunk taken, every utterance it cut published (or
    found silent), and its backlog gauges at 0 (every audio record's batch finished). The counters
    alone are not enough: a chunk is counted when the agent takes it, the utterances it ends only
    when its batch reaches the model, so while a slow model call runs the last chunks' utterances
    are not counted yet, and a collector that stopped then lost those clips' transcripts (a clip
    without any, a language without any utterance). The backlog gauges are refreshed once a
    second, hence two scrapes in a row. Then the reader: at the end of every partition of the
    transcript topic (the worker's transcripts are acknowledged before it counts them, so they
    are all there).

    Nor before the idle flush had its chance (`quiet_s` after the last chunk was sent, `sent()`):
    a clip whose speech runs to its last sample has no silence to end its utterance, so the idle
    flush cuts it `CALLSTT_IDLE_FLUSH_S` after its last chunk; until then nothing counts it, and
    a collector that stopped earlier read no transcript at all (espeak clips in CI, 2026-12-06)."""

    def __init__(self, worker, chunks: int, reader, quiet_s: float) -> None:
        self.worker, self.chunks, self.reader, self.quiet_s = worker, chunks, reader, quiet_s
        self.before = worker.metrics()
        self.busy, self.last, self.done_scrapes = True, 0.0, 0
        self.sent_at: float | None = None

    def sent(self) -> None:
        self.sent_at = time.monotonic()

    def delta(self, samples: dict[str, float], name: str) -> float:
        return metric_sum(samples, name) - metric_sum(self.before, name)

    def worker_done(self, now: dict[str, float]) -> bool:
        cut = self.delta(now, "callstt_utterances_total")
        out = self.delta(now, "callstt_transcripts_total") + self.delta(now, "callstt_silent_utterances_total")
        quiet = self.sent_at is not None and time.monotonic() - self.sent_at >= self.quiet_s
        return (quiet and self.delta(now, "callstt_chunks_total") >= self.chunks and out >= cut
                and metric_sum(now, "callstt_consumer_lag_messages") == 0)

    def read_to_end(self) -> bool:
        """The reader's position is the end of every partition assigned to it (an empty one counts)."""
        consumer = self.reader.consumer
        try:
            assignment = consumer.assignment()
            if not assignment:
                return False
            for position in consumer.position(assignment):
                low, high = consumer.get_watermark_offsets(position, timeout=5, cached=False)
                if high > low and position.offset < high:  # below 0: nothing read there yet
                    return False
        except KafkaException:  # no answer is no proof: still busy
            return False
        return True

    def __call__(self) -> bool:
        if time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            try:
                now = self.worker.metrics()
            except (httpx.HTTPError, ValueError):  # a slow or cut scrape is no answer: still busy
                return True
            self.done_scrapes = self.done_scrapes + 1 if self.worker_done(now) else 0
            self.busy = self.done_scrapes < 2 or not self.read_to_end()
        return self.busy


def apply_call_settings(worker, settings, records: Sequence, timeout: float = 120.0) -> None:
    """Publish the calls' settings and wait until the worker has applied all of them (its
    callstt_call_settings_total{action="set"} counter moved by as many), so audio sent next meets them."""
    key = 'callstt_call_settings_total{action="set"}'
    before = metric_sum(worker.metrics(), key)
    target = settings.with_overrides(kafka_bootstrap_servers=worker.bootstrap,
                                     call_settings_topic=worker.call_settings_topic)
    for record in records:
        publish_call_settings(target, record)
    deadline = time.monotonic() + timeout
    while metric_sum(worker.metrics(), key) - before < len(records):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not apply {len(records)} call settings within {timeout:g}s")
        time.sleep(0.2)


def run_pipeline(worker, clips: Sequence[SpeechClip], audio: Mapping[str, np.ndarray], call_prefix: str,
                 settings, restriction: tuple[str, ...] = ()) -> dict[str, Any]:
    """Each clip published as its own call `<call_prefix>-<name>` (no hints; with `restriction`, the
    call's settings first), all interleaved as fast as possible; (utterance index, text, language)
    per clip name, read back through the bench's collector."""
    by_call = {f"{call_prefix}-{clip.name}": clip for clip in clips}
    if restriction:
        apply_call_settings(worker, settings, [CallSettings(call_id=call_id, languages=tuple(restriction))
                                               for call_id in by_call])
    plan = ChunkPlan(SAMPLE_RATE, PIPELINE_ENCODING, PLATFORM_CHUNK_MS)
    jobs = [CallJob(call_id, "caller", CallInput(clip.name, audio[clip.name], SAMPLE_RATE))
            for call_id, clip in by_call.items()]
    audio_s = sum(len(audio[clip.name]) for clip in clips) / SAMPLE_RATE
    reader = TranscriptReader(worker.bootstrap, worker.transcript_topic, from_beginning=True)
    progress = _WorkerDone(worker, sum(job.chunk_count(plan) for job in jobs), reader,
                           quiet_s=settings.idle_flush_s + 2.0)
    publisher = CallPublisher(worker.bootstrap, worker.audio_topic)
    try:
        started = time.monotonic()
        send_calls(publisher, jobs, plan)
        publisher.flush()
        progress.sent()
        # No transcript count to wait for (a clip may be cut into several utterances): the
        # worker's counters say when it is done, then a quiet moment for the last records.
        arrivals = collect(reader, expected=1 << 30, deadline=time.monotonic() + 120.0 + 3 * audio_s,
                           idle_s=3.0, on_poll=progress, wanted=set(by_call))
        seconds = time.monotonic() - started
    finally:
        reader.close()
    utterances: dict[str, list] = {clip.name: [] for clip in clips}
    for arrival in arrivals:
        t = arrival.transcript
        utterances[by_call[t.call_id].name].append((t.utterance_index, t.text, t.language))
    for items in utterances.values():
        items.sort()
    return {"seconds": _r(seconds), "worker_finished": not progress.busy, "clips": utterances}


# --- the per-language table ------------------------------------------------------------------------

def _share(right: int, total: int) -> float | None:
    return _r(right / total) if total else None


def _lid(clips: Sequence[SpeechClip], run: Mapping[str, list]) -> dict[str, Any]:
    """Pipeline language ID: the share of clips whose every utterance is labelled with the clip's
    language (a clip without a transcript counts wrong), and of utterances, with their count.
    When none of the clips gave an utterance, the utterance share is 0.0 with a count of 0 (no
    utterance with the right label; the count and clips_without_transcript say why), never a
    missing number."""
    utterances = [(clip, label) for clip in clips for _, _, label in run[clip.name]]
    right_clips = sum(bool(run[c.name]) and all(label == c.language for _, _, label in run[c.name]) for c in clips)
    right_utterances = sum(label == clip.language for clip, label in utterances)
    return {"clips": _share(right_clips, len(clips)),
            "utterances": _share(right_utterances, len(utterances)) if utterances else 0.0,
            "utterance_count": len(utterances),
            "clips_without_transcript": sum(not run[c.name] for c in clips)}


def _joined(run: Mapping[str, list], name: str) -> str:
    return " ".join(text for _, text, _ in run[name])


def language_rows(clips: Sequence[SpeechClip], floor: Mapping[str, dict],
                  runs: Mapping[str, Mapping[str, list]]) -> list[dict[str, Any]]:
    """Per language (manifest order), then "all": clips, the error rate of the floor and of each
    pipeline run (`runs`: name -> clip name -> utterances; a run without the language's clips: None),
    and language ID of each."""
    by_language: dict[str, list[SpeechClip]] = defaultdict(list)
    for clip in clips:
        by_language[clip.language].append(clip)
    rows = []
    for language, group in [*by_language.items(), ("all", list(clips))]:
        row: dict[str, Any] = {"language": language, "clips": len(group)}
        if language != "all":
            metric, value = error_rate(language, [c.reference for c in group], [floor[c.name]["text"] for c in group])
            row["metric"], row["floor"] = metric, _r(value)
        row["lid_floor"] = _share(sum(floor[c.name]["language"] == c.language for c in group), len(group))
        for name, run in runs.items():
            inside = [c for c in group if c.name in run]
            if not inside:
                row[name] = None
                continue
            entry = {"clips": len(inside), "lid": _lid(inside, run)}
            if language != "all":
                entry["error_rate"] = _r(error_rate(language, [c.reference for c in inside],
                                                    [_joined(run, c.name) for c in inside])[1])
            row[name] = entry
        rows.append(row)
    return rows


def wrong_language(clips: Sequence[SpeechClip], floor: Mapping[str, dict],
                   runs: Mapping[str, Mapping[str, list]]) -> list[dict[str, Any]]:
    """Every whole-clip floor detection and pipeline utterance labelled with another language than
    its clip's: run, clip, utterance index (None for the floor), label, text."""
    wrong = [{"run": "floor", "clip": c.name, "language": c.language, "utterance": None,
              "label": floor[c.name]["language"], "text": floor[c.name]["text"]}
             for c in clips if floor[c.name]["language"] != c.language]
    for name, run in runs.items():
        for clip in clips:
            wrong += [{"run": name, "clip": clip.name, "language": clip.language, "utterance": index,
                       "label": label, "text": text}
                      for index, text, label in run.get(clip.name, []) if label != clip.language]
    return wrong


def clip_details(clips: Sequence[SpeechClip], floor: Mapping[str, dict],
                 runs: Mapping[str, Mapping[str, list]]) -> list[dict[str, Any]]:
    """Per clip: reference, the floor's text and label, each run's utterances and error rate."""
    def rate(clip: SpeechClip, text: str) -> float | None:
        return _r(error_rate(clip.language, [clip.reference], [text])[1])

    details = []
    for clip in clips:
        entry = {"clip": clip.name, "language": clip.language, "reference": clip.reference,
                 "floor": {**floor[clip.name], "error_rate": rate(clip, floor[clip.name]["text"])}}
        for name, run in runs.items():
            if clip.name in run:
                entry[name] = {"utterances": [list(u) for u in run[clip.name]],
                               "error_rate": rate(clip, _joined(run, clip.name))}
        details.append(entry)
    return details


# --- language ID by utterance length and sample rate -------------------------------------------------

def speech_span(audio: np.ndarray, frame: int = 320, below_peak_db: float = 35.0) -> tuple[int, int]:
    """(first, end) sample of the frames within `below_peak_db` of the loudest 20 ms frame: the clip
    without its leading and trailing silence (pieces are cut from speech, not from the pauses)."""
    frames = len(audio) // frame
    if frames == 0:
        return 0, len(audio)
    rms = np.sqrt(np.mean(np.square(audio[:frames * frame].reshape(frames, frame), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms >= max(rms.max() * 10 ** (-below_peak_db / 20), 1e-4))
    if loud.size == 0:
        return 0, len(audio)
    return int(loud[0] * frame), int(min(len(audio), (loud[-1] + 1) * frame))


def piece_spans(span: tuple[int, int], length: int, count: int) -> list[tuple[int, int]]:
    """Up to `count` non-overlapping pieces of `length` samples spread evenly over `span` (one: its middle)."""
    first, end = span
    fits = (end - first) // length if length > 0 else 0
    count = min(count, fits)
    if count <= 0:
        return []
    if count == 1:
        start = first + (end - first - length) // 2
        return [(start, start + length)]
    step = (end - first - length) / (count - 1)
    return [(first + int(i * step), first + int(i * step) + length) for i in range(count)]


def _length_label(length_s: float | None) -> str:
    return "whole" if length_s is None else f"{length_s:g} s"


def lid_by_length(backend, clips: Sequence[SpeechClip], options: AccuracyOptions,
                  audio: Callable[[SpeechClip, str], np.ndarray]) -> dict[str, Any]:
    """How often each detection gives the clip's language, by piece length x sample rate x method.

    `audio(clip, rate)` gives the clip at 16 kHz, for rate "16k" or "8k" (telephone band, see
    `telephone_band`). Methods: "worker" = `backend.detect_language(piece)` (what the worker runs
    today); "full_window" = faster-whisper's `model.detect_language(piece)` (Whisper's 30 s window).
    """
    methods = {"worker": lambda piece: backend.detect_language(piece)[0],
               "full_window": lambda piece: backend.model.detect_language(piece)[0]}
    lengths: list[float | None] = [*options.lengths_s, None]
    cells: dict[tuple[str, str, str], list] = defaultdict(list)  # (length, rate, method) -> outcomes
    started = time.perf_counter()
    for clip in clips:
        group = "espeak" if clip.path is None else (clip.language if clip.language in LID_COLUMNS else "other")
        span = speech_span(audio(clip, "16k"))  # the same pieces at both rates
        for rate in ("16k", "8k"):
            samples = audio(clip, rate)
            for length_s in lengths:
                spans = ([(0, len(samples))] if length_s is None else
                         piece_spans((span[0], min(span[1], len(samples))), int(length_s * SAMPLE_RATE),
                                     options.pieces_per_length))
                for first, end in spans:
                    piece = samples[first:end]
                    for method, detect in methods.items():
                        one = time.perf_counter()
                        label = detect(piece)
                        cells[(_length_label(length_s), rate, method)].append(
                            (group, clip.language, label, time.perf_counter() - one))
    order = {label: index for index, label in enumerate(map(_length_label, lengths))}
    rows = []
    for (length, rate, method), outcomes in sorted(cells.items(), key=lambda item: (
            item[0][1] != "16k", order[item[0][0]], item[0][2] != "worker")):
        real = [o for o in outcomes if o[0] != "espeak"]
        row = {"length": length, "rate": rate, "method": method, "pieces": len(outcomes),
               "real": _share(sum(lang == label for _, lang, label, _ in real), len(real))}
        for column in (*LID_COLUMNS, "other", "espeak"):
            mine = [o for o in outcomes if o[0] == column]
            row[column] = _share(sum(lang == label for _, lang, label, _ in mine), len(mine))
        row["ms_per_detection"] = _r(1000 * float(np.mean([o[3] for o in outcomes])), 1)
        row["wrong"] = dict(Counter(f"{lang}->{label}" for _, lang, label, _ in outcomes if lang != label)
                            .most_common(6))
        rows.append(row)
    return {
        "rows": rows, "seconds": _r(time.perf_counter() - started),
        "clips": {"real": sum(c.path is not None for c in clips), "espeak": sum(c.path is None for c in clips)},
        "how": f"pieces of {', '.join(f'{s:g}' for s in options.lengths_s)} s ({options.pieces_per_length} per "
               "length per clip, spread over the clip's speech, clips shorter than a length give none) and the "
               "whole clip; 16k: the clip at 16 kHz; 8k: the clip resampled to 8 kHz, G.711 mu-law, decoded and "
               "resampled to 16 kHz by the worker's decoder (models.audio.decoding); worker: backend.detect_language "
               "(short window first, full window when unsure); full_window: faster-whisper "
               "WhisperModel.detect_language (one 30 s window)",
    }


# --- the section --------------------------------------------------------------------------------------

class _AudioCache:
    """Each clip's audio once per rate: "16k" as published, "8k" through the telephone band."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, clip: SpeechClip, rate: str = "16k") -> np.ndarray:
        key = (clip.name, rate)
        if key not in self.cache:
            self.cache[key] = (clip_audio(clip, SAMPLE_RATE) if rate == "16k"
                               else telephone_band(clip_audio(clip, TELEPHONE_RATE)))
        return self.cache[key]


def run_accuracy(router, worker, clips: Sequence[SpeechClip] | None, settings, run_id: str,
                 options: AccuracyOptions | None = None, speech_dir: Path | str | None = None) -> dict[str, Any]:
    """The "Accuracy on real speech" section: floor, pipeline without and with the restriction, the
    per-language table and the wrong-language utterances (needs `worker`); then language ID by length."""
    options = options or AccuracyOptions()
    audio = _AudioCache()
    section: dict[str, Any] = {"speech_dir": str(speech_dir) if speech_dir is not None else None}
    real = list(clips or [])
    if real:
        chosen, section["clips_source"] = select(real, options.clips_per_language), "recordings (manifest.tsv)"
    elif options.synthesized_when_absent:
        chosen = select(synthesized_clips(), options.clips_per_language)
        section["clips_source"] = "espeak-ng sentences (no recordings found): not real speech"
    else:
        chosen = []
        section["skipped"] = (f"no recordings (no manifest.tsv at {speech_dir or DEFAULT_SPEECH_DIR}): the "
                              "per-language part is skipped (pass --speech DIR)")
    if chosen:
        section.update(_per_language(router, worker, chosen, settings, run_id, options, audio))
    lid_clips = select(real, options.lid_clips_per_language) if real else list(chosen)
    if options.espeak_in_lid:
        lid_clips += [c for c in synthesized_clips(options.espeak_in_lid, options.espeak_in_lid)
                      if c.name not in {x.name for x in lid_clips}]
    log.info("accuracy: language ID by length on %d clips", len(lid_clips))
    section["lid_by_length"] = lid_by_length(router.multilingual, lid_clips, options, audio)
    return section


def _per_language(router, worker, clips: list[SpeechClip], settings, run_id: str, options: AccuracyOptions,
                  audio: _AudioCache) -> dict[str, Any]:
    samples = {clip.name: audio(clip, "16k") for clip in clips}
    log.info("accuracy: floor, %d clips whole through the model", len(clips))
    floor = run_floor(router, clips, samples)
    runs: dict[str, dict[str, list]] = {}
    timings, finished = {"floor_s": floor["seconds"]}, {}
    restricted_name = "pipeline_" + "_".join(options.restriction)
    inside = [c for c in clips if c.language in options.restriction]
    plans = [("pipeline", clips, ())] + ([(restricted_name, inside, options.restriction)] if inside else [])
    for name, group, restriction in plans:
        log.info("accuracy: %s, %d clips as calls, no hints%s", name, len(group),
                 f", restricted to {','.join(restriction)}" if restriction else "")
        run = run_pipeline(worker, group, samples, f"{run_id}-{name.replace('_', '-')}", settings, restriction)
        runs[name], timings[f"{name}_s"], finished[name] = run["clips"], run["seconds"], run["worker_finished"]
    return {
        "clips": len(clips), "audio_seconds": _r(sum(len(s) for s in samples.values()) / SAMPLE_RATE, 1),
        "how": {"floor": "each whole clip through router.transcribe(audio, None): the model's own language "
                         "detection, the worker's decoding settings",
                "pipeline": f"each clip its own call, {SAMPLE_RATE} Hz {PIPELINE_ENCODING}, {PLATFORM_CHUNK_MS} ms "
                            "chunks, all calls interleaved as fast as the producer can (not paced), no language "
                            "hints, one worker subprocess; transcripts joined in utterance order",
                "restricted": f"{restricted_name}: the same for the {'/'.join(options.restriction)} clips, each call's "
                              f"CallSettings(languages={tuple(options.restriction)}) applied first",
                "scoring": "Whisper's normalisers (English for en, basic otherwise), digits scored one by one; "
                           f"CER for {', '.join(sorted(CER_LANGUAGES))}; LID pipeline: share of clips all of whose "
                           "utterances carry the clip's language (a clip without a transcript counts wrong), and "
                           "share of utterances"},
        "runs": list(runs), "timings": timings, "worker_finished": finished,
        "languages": language_rows(clips, floor["clips"], runs),
        "wrong_language": wrong_language(clips, floor["clips"], runs),
        "per_clip": clip_details(clips, floor["clips"], runs),
    }


# --- bench.md ---------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def markdown_lines(section: dict[str, Any]) -> list[str]:
    """The section in bench.md: the per-language table, the wrong-language utterances, the length table."""
    lines = ["", "## Accuracy on real speech", ""]
    if "skipped" in section:
        lines += [f"Skipped: {section['skipped']}.", ""]
    if "languages" in section:
        runs = section["runs"]
        how = section["how"]
        lines += [f"{section['clips']} clips ({section['audio_seconds']} s, {section['clips_source']}, "
                  f"{section['speech_dir']}). Floor: {how['floor']}. Pipeline: {how['pipeline']}. "
                  f"{how['restricted']}. Scoring: {how['scoring']}.", "",
                  "| language | clips | metric | floor | " + " | ".join(runs) + " | LID floor | " +
                  " | ".join(f"LID {name} (clips / utterances)" for name in runs) + " |",
                  "|" + "---|" * (5 + 2 * len(runs))]
        for row in section["languages"]:
            rates = [_cell(row[name]["error_rate"] if row.get(name) and "error_rate" in row[name] else None)
                     for name in runs]
            lids = [f"{_cell(row[name]['lid']['clips'])} / {_cell(row[name]['lid']['utterances'])}"
                    + (f" ({row[name]['lid']['clips_without_transcript']} without transcript)"
                       if row[name]["lid"]["clips_without_transcript"] else "")
                    if row.get(name) else "-" for name in runs]
            lines.append(f"| {row['language']} | {row['clips']} | {row.get('metric', '')} | "
                         f"{_cell(row.get('floor'))} | " + " | ".join(rates) + f" | {_cell(row['lid_floor'])} | "
                         + " | ".join(lids) + " |")
        timings = ", ".join(f"{name.removesuffix('_s')} {value} s" for name, value in section["timings"].items())
        lines += ["", f"Times: {timings}.", "", "Wrong-language labels (run, clip, utterance: label, text):", ""]
        wrong = section["wrong_language"]
        lines += [f"- {w['run']} {w['clip']} ({w['language']})"
                  + (f" #{w['utterance']}" if w["utterance"] is not None else "")
                  + f": **{w['label']}** \"{w['text']}\"" for w in wrong] or ["- none"]
    lid = section.get("lid_by_length")
    if lid:
        columns = ("real", *LID_COLUMNS, "other", "espeak")
        lines += ["", f"Language ID by utterance length ({lid['clips']['real']} real clips, {lid['clips']['espeak']} "
                      f"espeak sentences; {lid['seconds']} s): {lid['how']}.", "",
                  "| length | rate | method | pieces | " + " | ".join(columns)
                  + " | ms/detection | most frequent errors |",
                  "|" + "---|" * (6 + len(columns))]
        for row in lid["rows"]:
            lines.append(f"| {row['length']} | {row['rate']} | {row['method']} | {row['pieces']} | "
                         + " | ".join(_cell(row[c]) for c in columns)
                         + f" | {row['ms_per_detection']} | "
                         + ", ".join(f"{k} x{v}" for k, v in row["wrong"].items()) + " |")
    return lines


# -- synthetic checks: vocabulary, redaction, invented text (model only) ------------------------

def synthetic_checks(router, settings) -> dict[str, Any]:
    """The project's synthetic sets through the worker's model step (packed, as the worker runs):
    rare-word recall with and without the call's vocabulary (streams/bench/evaluation/rare_words.py), redaction
    precision and recall (streams/bench/redaction_set.py), invented transcripts per hour of
    non-speech with the worker's guard (streams/bench/evaluation/guard_report.py)."""
    started = time.perf_counter()
    rare = measure_rare_words(router, mode="packed", non_speech=False)
    redaction = measure_redaction(router, mode="packed")
    guard = measure_guard(router, pipeline_config(settings).guard, language="en", phone_line=True)
    guard = {key: value for key, value in guard.items() if key not in ("config", "clips")}
    return {"rare_words": rare, "redaction": redaction, "guard": guard,
            "seconds": round(time.perf_counter() - started, 1)}


def synthetic_lines(checks: dict[str, Any]) -> list[str]:
    rare, redaction, guard = checks["rare_words"], checks["redaction"], checks["guard"]
    per_hour = guard["invented_per_hour"]
    return [
        "", "## Synthetic checks (espeak-ng speech and a synthesized non-speech corpus, packed)", "",
        "| check | without | with |", "|---|---|---|",
        f"| rare-word recall, call vocabulary ({rare['without']['occurrences']} rare words) | "
        f"{rare['without']['recall']} | {rare['with']['recall']} |",
        f"| WER on those sentences | {rare['without']['wer']} | {rare['with']['wer']} |",
        f"| invented transcripts per hour of non-speech ({guard['non_speech_seconds']} s; model alone / guard) | "
        f"{per_hour.get('model')} | {per_hour.get('guard')} |",
        f"| real short answers kept by the guard | | {guard['short_answers']['kept']}/{guard['short_answers']['of']} |",
        f"| redaction recall / precision ({redaction['positives']} values, {redaction['negatives']} sentences "
        f"that must stay) | | {redaction['recall']} / {redaction['precision']}; negatives kept "
        f"{redaction['negatives_kept']} |",
        "", f"Synthetic checks took {checks['seconds']} s.",
    ]
