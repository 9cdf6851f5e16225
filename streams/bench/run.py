"""`run_bench`: the sections in order (worker start, floor, pipeline, live, accuracy on real speech,
capacity, inference modes, accuracy) on one worker subprocess, on the bench's own broker or a given
one, or only the accuracy on real speech (`accuracy_only`); and `main`, the `python -m callstt.streams.bench`
command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from callstt.infra.local.kafka import LocalKafka
from callstt.streams.bench.accuracy import AccuracyOptions, run_accuracy, synthetic_checks
from callstt.streams.bench.chain import CHAIN_CALLS, chain_processes, run_chain
from callstt.streams.bench.corpus import default_speech_dir, load_speech
from callstt.streams.bench.floor import run_floor, run_inference_modes
from callstt.streams.bench.gateway import GATEWAY_CALLS, gateway_process, run_gateway
from callstt.streams.bench.report import markdown
from callstt.streams.bench.sections import capacity, model_bound_estimate, run_live, run_pipeline, speech_fraction
from callstt.streams.bench.stats import _r, machine_info
from callstt.streams.bench.subprocesses import WorkerSubprocess
from callstt.streams.bench.windows import window_curve
from callstt.streams.bench.workload import (ENCODING, TELEPHONE_RATE, BenchCall, Conversation, Synth,
                                            make_conversations, make_monologues, make_workload, speech_sources)
from callstt.streams.client.producer import PLATFORM_CHUNK_MS
from callstt.streams.model_routes import build_router
from callstt.streams.settings import Settings

log = logging.getLogger("callstt.bench")

BENCH_BROKER_NAME = "bench"
BENCH_BROKER_PORT = 39092
PARTIALS_ON_MS = 1000  # --partials on when the environment turned them off: CALLSTT_PARTIAL_INTERVAL_MS's default


def bench_settings(settings=None):
    """`settings` (default: the environment's), with every core as threads when none are set."""
    settings = settings or Settings.from_env()
    for noisy in ("faster_whisper", "httpx"):  # one INFO line per model call / per scrape otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not settings.cpu_threads:
        settings = settings.with_overrides(cpu_threads=len(os.sched_getaffinity(0)))
    return settings


def with_partials(settings, partials: str | None):
    """`settings` with the worker's interims turned off or on (`--partials off|on`; None: as the
    environment says), so one bench command measures capacity both ways."""
    if partials is None:
        return settings
    if partials not in ("on", "off"):
        raise ValueError(f"--partials {partials}: use on or off")
    interval = 0 if partials == "off" else settings.partial_interval_ms or PARTIALS_ON_MS
    return settings.with_overrides(partial_interval_ms=interval)


def report_header(quick: bool, seed: int, settings, accuracy_only: bool = False,
                  windows_only: bool = False, partials: str | None = None, chain_only: bool = False,
                  gateway_only: bool = False) -> dict[str, Any]:
    return {
        "command": "callstt bench" + (" --quick" if quick else "") + (" --accuracy-only" if accuracy_only else "")
                   + (" --windows" if windows_only else "") + (f" --partials {partials}" if partials else "")
                   + (" --chain" if chain_only else "") + (" --gateway" if gateway_only else ""),
        "quick": quick, "seed": seed,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
        "settings": {"model": settings.model, "compute_type": settings.compute_type, "device": settings.device,
                     "cpu_threads": settings.cpu_threads, "beam_size": settings.beam_size,
                     "inference_mode": settings.inference_mode, "model_lanes": settings.model_lanes,
                     "fast_language_detection": settings.fast_language_detection,
                     "min_silence_ms": settings.min_silence_ms, "max_utterance_ms": settings.max_utterance_ms,
                     "partial_interval_ms": settings.partial_interval_ms,
                     "audio": f"{TELEPHONE_RATE} Hz {ENCODING}, {PLATFORM_CHUNK_MS} ms chunks", "worker_partitions": 3},
    }


def workload(report: dict[str, Any], seed: int, quick: bool, live_seconds: float, run_id: str,
             speech_dir: Path | None) -> tuple[dict[str, BenchCall], list[Conversation], list[Conversation]]:
    """The fast calls (by call id), the live pool of conversations and the live pool of sentences
    with pauses (real recordings from `speech_dir` when there); their description goes into the
    report."""
    synth = Synth()
    fast_calls = make_workload(seed, english=2 if quick else 4, vietnamese=1 if quick else 2,
                               sentences=3 if quick else 4, silence_s=(0.9, 1.5), synth=synth)
    fast = {f"{run_id}-fast-{call.name}": call for call in fast_calls}
    sources = speech_sources(speech_dir)
    live_pool = make_conversations(seed + 1, 8, live_seconds, sources, prefix="live")
    pauses_pool = make_monologues(seed + 2, 8, live_seconds, sources)
    report["workload"] = {
        "fast_calls": [{"name": c.name, "language": c.language, "seconds": _r(c.seconds, 2),
                        "sentences": len(c.sentences)} for c in fast_calls],
        "live_calls_pool": [{"name": c.name, "language": c.language, "seconds": _r(c.seconds, 2),
                             "rate": f"{c.sample_rate} Hz {c.encoding}", "turns": len(c.turns),
                             "speech_fraction": _r(c.speech_s / c.seconds, 2)} for c in live_pool],
        "pauses_calls_pool": [{"name": c.name, "seconds": _r(c.seconds, 2), "sentences": len(c.turns),
                               "speech_fraction": _r(c.speech_s / c.seconds, 2)} for c in pauses_pool],
        "live_speech": "real recordings (" + str(speech_dir) + ")" if any(
            s.real for pool in sources.values() for s in pool) else "espeak-ng sentences",
        "hints": "none: the worker detects each stream's language (sticky once confident)",
    }
    return fast, live_pool, pauses_pool


def own_broker(bootstrap: str | None):
    """`(broker to stop afterwards or None, bootstrap)`: with no `bootstrap`, the bench's own broker
    (infra.local.kafka, name "bench", port 39092), started unless it already runs (then it is
    someone else's bench broker: used, and left running)."""
    if bootstrap is not None:
        return None, bootstrap
    broker = LocalKafka(name=BENCH_BROKER_NAME, brokers=1, port=BENCH_BROKER_PORT)
    if not broker.running():
        broker.wipe()
        broker.start()
    else:
        broker = None  # someone else's bench broker: use it, leave it running
    return broker, f"127.0.0.1:{BENCH_BROKER_PORT}"


def worker_env(settings) -> dict[str, str]:
    """The worker's settings: the floor's model, compute type, device, threads, lanes,
    beam and cut, and its interims' interval (0: none)."""
    return {"MODEL_SIZE": settings.model, "COMPUTE_TYPE": settings.compute_type, "DEVICE": settings.device,
            "OMP_NUM_THREADS": str(settings.cpu_threads), "CALLSTT_BEAM_SIZE": str(settings.beam_size),
            "CALLSTT_MIN_SILENCE_MS": str(settings.min_silence_ms),
            "CALLSTT_MAX_UTTERANCE_MS": str(settings.max_utterance_ms),
            "CALLSTT_INFERENCE_MODE": settings.inference_mode, "CALLSTT_MODEL_LANES": str(settings.model_lanes),
            "CALLSTT_PARTIAL_INTERVAL_MS": str(settings.partial_interval_ms),
            "CALLSTT_IDLE_FLUSH_S": "3"}


def start_worker(report: dict[str, Any], worker: WorkerSubprocess) -> None:
    log.info("starting a worker (%s)", worker.name)
    worker.start(timeout=180)
    time.sleep(1.0)
    idle_metrics = worker.metrics()
    report["worker"] = {"start_to_health_200_s": _r(worker.ready_after_s),
                        "model_load_s": _r(idle_metrics.get("callstt_model_load_seconds")),
                        "idle": worker.memory()}


def floor_phase(report: dict[str, Any], settings, fast: dict[str, BenchCall]) -> tuple[Any, list]:
    """The floor section; returns the in-process router and the utterances it cut."""
    log.info("floor: the utterances in-process")
    load_started = time.perf_counter()
    router = build_router(settings)
    in_process_load = time.perf_counter() - load_started
    floor = run_floor(router, fast, settings)
    utterances = floor.pop("_utterances")
    floor.pop("_texts")
    floor["model_load_s_in_process"] = _r(in_process_load)
    report["floor"] = floor
    return router, utterances


def worker_phases(report: dict[str, Any], worker: WorkerSubprocess, fast: dict[str, BenchCall],
                  live_pool: list[Conversation], pauses_pool: list[Conversation], live_calls: list[int], seed: int,
                  run_id: str, quick: bool) -> None:
    """The pipeline and the live sections on the worker (conversations at each K; sentences with
    pauses at each K up to 8, K=1 alone in --quick), and its memory after each."""
    floor = report["floor"]
    log.info("pipeline: %d calls as fast as possible", len(fast))
    report["pipeline"] = run_pipeline(worker, fast, floor["transcripts"], floor["seconds"],
                                      floor["assembly_seconds_in_process"])
    report["worker"]["after_pipeline"] = worker.memory()

    report["live"] = []
    for k in live_calls:
        log.info("live: %d calls at real-time pace", k)
        report["live"].append(run_live(worker, live_pool, k, seed, run_id))
    report["live_pauses"] = []
    for k in [1] if quick else [k for k in live_calls if k <= 8]:
        log.info("live, sentences with pauses: %d calls at real-time pace", k)
        report["live_pauses"].append(run_live(worker, pauses_pool, k, seed, f"{run_id}-pauses"))
    report["worker"]["after_live"] = worker.memory()
    report["worker"]["peak_rss_mb"] = report["worker"]["after_live"].get("VmHWM")


def real_speech_phase(report: dict[str, Any], router, worker: WorkerSubprocess, settings, run_id: str,
                      speech_dir: Path | None, options: AccuracyOptions | None) -> None:
    """Accuracy on real speech (streams.bench.accuracy): the recordings in `speech_dir`, when there."""
    log.info("accuracy on real speech: %s", speech_dir or "no recordings")
    report["accuracy_real_speech"] = run_accuracy(router, worker, load_speech(speech_dir), settings, run_id,
                                                  options, speech_dir)
    if (options or AccuracyOptions()).synthetic_checks:
        log.info("synthetic checks: vocabulary, redaction, invented text")
        report["accuracy_synthetic"] = synthetic_checks(router, settings)


def inference_phase(report: dict[str, Any], router, utterances: list, fast: dict[str, BenchCall],
                    batch_size: int, settings, floor_rtf: float, speech: float) -> None:
    """The inference modes; the best mode's capacity estimate and the pipeline against the floor
    in the worker's own mode."""
    log.info("inference modes: single, batched, packed")
    report["inference_modes"] = run_inference_modes(router, utterances, fast, batch_size)
    modes = report["inference_modes"]["modes"]
    best = report["inference_modes"]["best_within_1_point_wer"]
    if best != "single" and floor_rtf:
        report["capacity"][f"model_bound_estimate_{best}"] = model_bound_estimate(
            modes[best]["speedup_vs_single"], floor_rtf, speech)
    in_mode = modes.get(settings.inference_mode, {}).get("seconds")
    pipeline_s = report["pipeline"]["seconds"]
    # With packing the pipeline can beat the one-at-a-time floor; this is its cost over the
    # model alone doing the same kind of inference on the same utterances.
    report["pipeline"]["floor_in_worker_mode_s"] = in_mode
    report["pipeline"]["overhead_vs_floor_in_worker_mode"] = (
        _r(pipeline_s / in_mode, 3) if pipeline_s and in_mode else None)


def run_bench(quick: bool = False, out_dir: Path | str = ".local/bench", bootstrap: str | None = None,
              settings=None, seed: int = 7, live_calls: list[int] | None = None,
              live_seconds: float | None = None, batch_size: int = 8, speech_dir: Path | str | None = None,
              accuracy_only: bool = False, accuracy: AccuracyOptions | None = None,
              windows_only: bool = False, partials: str | None = None, chain_only: bool = False,
              gateway_only: bool = False) -> dict[str, Any]:
    """Run every section; write bench.json and bench.md into `out_dir`; return the report.

    `bootstrap` None starts (and afterwards stops) a broker of its own (infra.local.kafka,
    name "bench", port 39092). `settings` default: streams.settings.Settings.from_env(); the
    floor and the worker use its model, compute type, device, threads and beam size.
    `speech_dir`: the recordings for the accuracy on real speech (default ../shared/speech when
    it exists); `accuracy_only`: that section alone (no floor, pipeline, live or capacity runs);
    `windows_only`: only the encoder-window curve (streams/bench/windows.py; no broker, no worker).
    `partials` "off" / "on": the worker without / with interims (None: CALLSTT_PARTIAL_INTERVAL_MS).
    `chain_only`: only the translation chain (streams/bench/chain.py; K = 1, 2, 4 by default).
    `gateway_only`: only the gateway against straight to Kafka (streams/bench/gateway.py; K = 1, 2, 3).
    """
    settings = with_partials(bench_settings(settings), partials)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    live_calls = live_calls or (CHAIN_CALLS if chain_only else GATEWAY_CALLS if gateway_only
                                else [1, 2] if quick else [1, 2, 4, 8, 12])
    live_seconds = live_seconds or (15.0 if quick else 120.0)
    run_id = uuid.uuid4().hex[:6]
    total_started = time.monotonic()
    speech_dir = Path(speech_dir) if speech_dir is not None else default_speech_dir()
    report = report_header(quick, seed, settings, accuracy_only, windows_only, partials, chain_only, gateway_only)
    if windows_only:
        report["windows"] = window_curve(build_router(settings), load_speech(speech_dir), batch_size=batch_size)
        return finish_report(report, out, total_started)
    fast, live_pool, pauses_pool = ({}, [], []) if accuracy_only else workload(report, seed, quick, live_seconds,
                                                                                run_id, speech_dir)

    broker, bootstrap = own_broker(bootstrap)
    data_root = Path(tempfile.mkdtemp(prefix="callstt-bench-"))
    if chain_only:  # the transcriber, the translator and the speaker
        processes = chain_processes(bootstrap, data_root, worker_env(settings))
    else:
        processes = [WorkerSubprocess(bootstrap, data_root, name=f"bench{uuid.uuid4().hex[:8]}",
                                      extra_env=worker_env(settings))]
        if gateway_only:
            processes.append(gateway_process(processes[0]))
    worker = processes[0]
    try:
        if chain_only:
            report["chain"] = run_chain(processes, live_pool, live_calls, seed, run_id)
            return finish_report(report, out, total_started)
        start_worker(report, worker)
        if gateway_only:
            report["gateway"] = run_gateway(worker, processes[1], live_pool, live_calls, seed, run_id)
            return finish_report(report, out, total_started)
        if accuracy_only:
            real_speech_phase(report, build_router(settings), worker, settings, run_id, speech_dir, accuracy)
        else:
            full_bench(report, worker, settings, fast, (live_pool, pauses_pool), live_calls, live_seconds, seed,
                       run_id, quick, batch_size, speech_dir, accuracy)
    finally:
        for process in processes:
            process.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(data_root, ignore_errors=True)
    return finish_report(report, out, total_started)


def full_bench(report: dict[str, Any], worker: WorkerSubprocess, settings, fast: dict[str, BenchCall],
               pools: tuple[list[Conversation], list[Conversation]], live_calls: list[int], live_seconds: float,
               seed: int, run_id: str, quick: bool, batch_size: int, speech_dir: Path | None,
               accuracy: AccuracyOptions | None) -> None:
    """Every section in order; the worker is stopped once the sections that need it are done. The
    accuracy on real speech is left out of --quick unless `accuracy` options are given (on the whole
    set it takes minutes: `callstt bench --accuracy-only` runs it alone)."""
    router, utterances = floor_phase(report, settings, fast)
    live_pool, pauses_pool = pools
    worker_phases(report, worker, fast, live_pool, pauses_pool, live_calls, seed, run_id, quick)
    if quick and accuracy is None:
        report["accuracy_real_speech"] = {"skipped": "left out of --quick: run callstt bench --accuracy-only"}
    else:
        real_speech_phase(report, router, worker, settings, run_id, speech_dir, accuracy)
    worker.stop()

    floor_rtf = report["floor"]["realtime_factor"] or 0
    speech = speech_fraction(live_pool)
    report["capacity"] = capacity(report["live"], floor_rtf, speech, quick, live_seconds)
    inference_phase(report, router, utterances, fast, batch_size, settings, floor_rtf, speech)
    report["accuracy"] = {"floor": report["floor"]["accuracy"], "pipeline": report["pipeline"]["accuracy"],
                          "live": {str(r["calls"]): r["accuracy"] for r in report["live"]},
                          "live_pauses": {str(r["calls"]): r["accuracy"] for r in report["live_pauses"]}}


def finish_report(report: dict[str, Any], out: Path, total_started: float) -> dict[str, Any]:
    """The run's length and the load at its end; bench.json and bench.md written into `out`."""
    report["bench_seconds"] = _r(time.monotonic() - total_started, 1)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "bench.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out / "bench.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> None:
    """`python -m callstt.streams.bench [--quick] [--accuracy-only] [--speech DIR] [--output DIR] [--bootstrap HOST:PORT]
    [--partials off|on]` (as `callstt bench`)."""
    parser = argparse.ArgumentParser(prog="python -m callstt.streams.bench",
                                     description="callstt's benchmark: how close the pipeline runs to the model "
                                                 "alone, its latency, and how many live calls one machine carries")
    parser.add_argument("--quick", action="store_true", help="K = 1, 2 for ~20 s each: a couple of minutes")
    parser.add_argument("--output", default=".local/bench", help="folder for bench.json and bench.md")
    parser.add_argument("--bootstrap", default=None, help="a running broker (default: start one on port 39092)")
    parser.add_argument("--calls", default=None, help="live K values, comma-separated (default 1,2,4,8,12)")
    parser.add_argument("--live-seconds", type=float, default=None, help="length of each live call")
    parser.add_argument("--speech", default=None,
                        help="recordings with a manifest.tsv (default: ../shared/speech when it exists)")
    parser.add_argument("--accuracy-only", action="store_true",
                        help="only the accuracy on real speech (no floor, pipeline, live or capacity runs)")
    parser.add_argument("--windows", action="store_true",
                        help="only the encoder-window curve: WER and time by CALLSTT_MIN_WINDOW_S")
    parser.add_argument("--chain", action="store_true",
                        help="only the translation chain: transcriber, translator, speaker; K = 1, 2, 4")
    parser.add_argument("--gateway", action="store_true",
                        help="only the gateway against straight to Kafka: K = 1, 2, 3 of each at once")
    parser.add_argument("--partials", choices=("off", "on"), default=None,
                        help="interim transcripts in the worker (default: CALLSTT_PARTIAL_INTERVAL_MS, 1000 ms)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    calls = [int(k) for k in args.calls.split(",")] if args.calls else None
    report = run_bench(quick=args.quick, out_dir=args.output, bootstrap=args.bootstrap, live_calls=calls,
                       live_seconds=args.live_seconds, speech_dir=args.speech, accuracy_only=args.accuracy_only,
                       windows_only=args.windows, partials=args.partials, chain_only=args.chain,
                       gateway_only=args.gateway)
    print(markdown(report))
