"""The floor: the utterances a worker would cut, transcribed in-process by the same backend,
one at a time (the model-alone time); the inference modes (single, batched, packed) on the
same utterances; and the accuracy figures (WER, language-ID) every section reports."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.bench.stats import _r, summary
from callstt.streams.bench.workload import ENCODING, TELEPHONE_RATE, BenchCall
from callstt.streams.client.producer import PLATFORM_CHUNK_MS, ChunkPlan, iter_chunks
from callstt.streams.core.assembly import StreamState
from callstt.streams.core.pipeline import Pipeline, PipelineConfig
from callstt.streams.core.pipeline import cut_utterances as cut
from callstt.streams.core_from_settings import build_pipeline
from callstt.streams.settings import Settings

# --- the worker's own cut, run in-process (untimed for the floor) -----------------------------

def cut_utterances(call: BenchCall, call_id: str, settings) -> tuple[list, float]:
    """The utterances a worker cuts from this call's chunks (the pipeline core's own cut: same
    assembler, VAD, endpointing), and the seconds that took (decode + VAD + endpointing, in-process)."""
    start_ms = int(time.time() * 1000)
    chunks = list(iter_chunks(call.samples, call_id, "caller", ChunkPlan(TELEPHONE_RATE, ENCODING, PLATFORM_CHUNK_MS), start_ms))
    pipeline = build_pipeline(settings)
    started = time.perf_counter()
    utterances = cut(pipeline, chunks, received_ms=lambda chunk: chunk.capture_ts_ms)
    return utterances, time.perf_counter() - started


def call_accuracy(calls: dict[str, BenchCall], texts: dict[str, list[tuple[int, str, str]]]) -> dict[str, Any]:
    """English WER over whole calls (transcripts joined in utterance order) and language-ID accuracy."""
    refs, hyps, right, total = [], [], 0, 0
    for call_id, call in calls.items():
        items = sorted(texts.get(call_id, []))
        for _, _, language in items:
            total += 1
            right += language == call.language
        if call.language == "en":
            refs.append(" ".join(call.sentences))
            hyps.append(" ".join(text for _, text, _ in items))
    return {"wer_en": _r(word_error_rate(refs, hyps)) if refs else None,
            "language_id_accuracy": _r(right / total) if total else None, "transcripts": total}


# --- the floor and the inference modes -------------------------------------------------------

def run_floor(router, calls: dict[str, BenchCall], settings) -> dict[str, Any]:
    """The model alone: each call's utterances through the pipeline core's model step one at a
    time (mode single, one utterance per call of it), the stream's language carried between
    them by the same rule as the worker's."""
    pipeline = build_pipeline(settings)
    cut = {call_id: cut_utterances(call, call_id, settings) for call_id, call in calls.items()}
    assembly_s = sum(seconds for _, seconds in cut.values())
    texts: dict[str, list] = defaultdict(list)
    per_utterance = []
    started = time.perf_counter()
    for call_id, (utterances, _) in cut.items():
        stream = StreamState(call_id, "caller")  # what the stream remembers: its language evidence
        for utterance in utterances:
            one_started = time.perf_counter()
            [result] = pipeline.transcribe(router, [(stream, utterance)], latest=lambda u: stream, mode="single")
            per_utterance.append(time.perf_counter() - one_started)
            if result.transcript is not None:
                texts[call_id].append((utterance.index, result.transcript.text, result.transcript.language))
    floor_s = time.perf_counter() - started
    utterances = [u for us, _ in cut.values() for u in us]
    audio_s = sum(u.seconds for u in utterances)
    return {
        "seconds": _r(floor_s), "model_seconds": _r(sum(per_utterance)), "utterances": len(utterances),
        "transcripts": sum(len(v) for v in texts.values()), "utterance_audio_seconds": _r(audio_s),
        "realtime_factor": _r(floor_s / audio_s) if audio_s else None,
        "seconds_per_utterance": summary(per_utterance),
        "assembly_seconds_in_process": _r(assembly_s),
        "accuracy": call_accuracy(calls, texts),
        "_utterances": utterances, "_texts": texts,
    }


def run_inference_modes(router, utterances: list, calls: dict[str, BenchCall], batch_size: int) -> dict[str, Any]:
    """(a) single, (b) batched, (c) packed on the same utterances, all ready at once, each with the
    worker's whole model step (`choose_and_transcribe`: language choice and detection included)."""
    pipeline = Pipeline(PipelineConfig(inference_batch_size=batch_size))
    audio_s = sum(u.seconds for u in utterances)
    modes = {}
    for mode in Settings.choices("inference_mode"):
        # All ready at once, no stream knowing its language yet: the worker's model step.
        ready = [(StreamState(u.call_id, u.stream_id), u) for u in utterances]
        started = time.perf_counter()
        results = pipeline.transcribe(router, ready, latest=lambda u: None, mode=mode)
        seconds = time.perf_counter() - started
        texts: dict[str, list] = defaultdict(list)
        for result in results:
            if result.transcript is not None:
                texts[result.utterance.call_id].append((result.utterance.index, result.transcript.text,
                                                        result.choice.language))
        modes[mode] = {"seconds": _r(seconds), "utterances_per_second": _r(len(ready) / seconds),
                       "audio_seconds_per_second": _r(audio_s / seconds),
                       "wer_en": call_accuracy(calls, texts)["wer_en"],
                       "wer_vi": _wer_language(calls, texts, "vi")}
    base = modes["single"]
    for mode in modes.values():
        mode["speedup_vs_single"] = _r(base["seconds"] / mode["seconds"]) if mode["seconds"] else None
        mode["wer_en_delta_points"] = (_r(100 * (mode["wer_en"] - base["wer_en"]), 2)
                                       if mode["wer_en"] is not None and base["wer_en"] is not None else None)
    eligible = [name for name, m in modes.items()
                if m["wer_en_delta_points"] is not None and m["wer_en_delta_points"] <= 1.0]
    best = max(eligible, key=lambda name: modes[name]["utterances_per_second"]) if eligible else "single"
    return {"utterances": len(utterances), "audio_seconds": _r(audio_s), "batch_size": batch_size,
            "modes": modes, "best_within_1_point_wer": best}


def _wer_language(calls: dict[str, BenchCall], texts: dict[str, list], language: str) -> float | None:
    refs = [" ".join(c.sentences) for cid, c in calls.items() if c.language == language]
    hyps = [" ".join(t for _, t, _ in sorted(texts.get(cid, []))) for cid, c in calls.items() if c.language == language]
    return _r(word_error_rate(refs, hyps, language)) if refs else None
