"""bench.md: the short table people read (bench.json has everything)."""

from __future__ import annotations

from typing import Any

from callstt.streams.bench.accuracy import markdown_lines as real_speech_lines
from callstt.streams.bench.accuracy import synthetic_lines
from callstt.streams.bench.chain import markdown_lines as chain_lines
from callstt.streams.bench.gateway import markdown_lines as gateway_lines
from callstt.streams.bench.sections import P95_LIMIT_S, P95_USABLE_S
from callstt.streams.bench.stages import stage_line
from callstt.streams.bench.windows import markdown_lines as window_lines


def markdown(report: dict[str, Any]) -> str:
    """The short table people read (the JSON has everything)."""
    m, s = report["machine"], report["settings"]
    lines = [
        f"# {report['command']} ({report['started_at']})", "",
        f"Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"faster-whisper {m['packages'].get('faster-whisper')}, ctranslate2 {m['packages'].get('ctranslate2')}; "
        f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end')}.",
        f"Settings: model {s['model']} {s['compute_type']} on {s['device']}, {s['cpu_threads']} threads, "
        f"beam {s['beam_size']}, silence {s['min_silence_ms']} ms, {s['audio']}, "
        f"inference mode {s['inference_mode']}, model lanes {s.get('model_lanes', 1)}.",
    ]
    if "floor" in report:  # not with --accuracy-only
        lines += main_table(report)
    if "accuracy_real_speech" in report:
        lines += real_speech_lines(report["accuracy_real_speech"])
    if "accuracy_synthetic" in report:
        lines += synthetic_lines(report["accuracy_synthetic"])
    if "windows" in report:
        lines += window_lines(report["windows"])
    if "chain" in report:
        lines += chain_lines(report["chain"])
    if "gateway" in report:
        lines += gateway_lines(report["gateway"])
    lines += ["", f"Bench took {report['bench_seconds']} s. Full figures: bench.json."]
    return "\n".join(lines) + "\n"


def main_table(report: dict[str, Any]) -> list[str]:
    """The floor, pipeline, live, capacity, worker, accuracy and inference-mode rows."""
    s = report["settings"]
    floor, pipe, worker, cap = report["floor"], report["pipeline"], report["worker"], report["capacity"]
    lines = [
        "",
        "| measure | value |", "|---|---|",
        f"| floor: {floor['utterances']} utterances in-process, sequential | {floor['seconds']} s "
        f"(RTF {floor['realtime_factor']}) |",
        f"| pipeline: same calls, as fast as possible, one worker | {pipe['seconds']} s |",
        f"| **overhead** (pipeline / floor) | **{pipe['overhead']}** "
        f"(pipeline / worker's own model time: {pipe['overhead_vs_worker_model_time']}) |",
        f"| the same floor in the worker's inference mode ({s['inference_mode']}); overhead against it | "
        f"{pipe.get('floor_in_worker_mode_s')} s; {pipe.get('overhead_vs_floor_in_worker_mode')} |",
        "| where the pipeline's time goes (worker metrics), s | " + ", ".join(
            f"{name.removesuffix('_s')} {value}" for name, value in pipe["where_the_time_goes"].items()
            if name.endswith("_s") and name != "assembly_seconds_same_audio_in_process") +
        f" ({pipe['model_calls']} model calls for {pipe['transcripts']} transcripts) |",
    ]
    for live in report["live"]:
        lines += live_lines(live, f"live K={live['calls']}")
    for live in report.get("live_pauses", []):
        lines += live_lines(live, f"pauses K={live['calls']}")
    lines += [
        f"| **capacity** (p95 end of speech -> received <= {P95_LIMIT_S} s, no lag growth) | **{cap['live_calls']}** of "
        f"K={cap['tried']}{' (sweep limit)' if cap['limited_by_sweep'] else ''}; model-bound estimate "
        f"{cap.get('model_bound_estimate_single')} one at a time |",
        f"| largest K with p95 <= {P95_USABLE_S:g} s, no lag growth; latency bounded per K (lag not growing over "
        f"the run; ? = too short to tell) | {cap.get(f'live_calls_p95_under_{P95_USABLE_S:g}_s')}; "
        f"{bounded_cell(cap.get('latency_bounded', {}))} |",
        f"| worker start -> /health 200; model load | {worker['start_to_health_200_s']} s; {worker['model_load_s']} s |",
        f"| worker RSS idle / peak (VmHWM) | {worker['idle'].get('VmRSS')} MB / {worker.get('peak_rss_mb')} MB |",
        f"| WER en: floor / pipeline | {floor['accuracy']['wer_en']} / {pipe['accuracy']['wer_en']} |",
        f"| language-ID accuracy: floor / pipeline | {floor['accuracy']['language_id_accuracy']} / "
        f"{pipe['accuracy']['language_id_accuracy']} |",
    ]
    modes = report.get("inference_modes")
    if modes:
        for name, mode in modes["modes"].items():
            lines.append(f"| inference {name}: utterances/s, speedup, WER en (delta pts), WER vi | "
                         f"{mode['utterances_per_second']}, x{mode['speedup_vs_single']}, {mode['wer_en']} "
                         f"({mode['wer_en_delta_points']}), {mode['wer_vi']} |")
        lines.append(f"| best inference mode within 1 WER point | {modes['best_within_1_point_wer']} |")
    return lines


def bounded_cell(per_k: dict[str, bool | None]) -> str:
    return ", ".join(f"K={k} {'?' if ok is None else 'yes' if ok else 'no'}" for k, ok in per_k.items()) or "-"


def live_lines(live: dict[str, Any], label: str) -> list[str]:
    """One live run's rows ("live K=2": conversations; "pauses K=1": sentences with pauses)."""
    lines: list[str] = []
    eos, ep = live["end_of_speech_to_received_s"], live["after_endpoint_to_received_s"]
    lines.append(f"| {label} ({live['call_seconds']} s calls, {live['speech_fraction']} speech): "
                 f"end of speech -> received p50/p95/p99 | {eos['p50']} / {eos['p95']} / {eos['p99']} s |")
    model = live.get("model", {})
    accuracy = live.get("accuracy", {})
    wer = ", ".join(f"{key[4:]} {value}" for key, value in accuracy.items() if key.startswith("wer_"))
    lines.append(f"| {label}: after endpoint p50/p95/p99; lag grows; utterances per model "
                 f"call, model busy (finals; with interims); WER | {ep['p50']} / {ep['p95']} / {ep['p99']} s; "
                 f"{live['lag']['grows']}; {model.get('utterances_per_model_call')}, "
                 f"{model.get('model_busy_fraction')}; {model.get('model_busy_fraction_with_interims')}; {wer} |")
    if "interims" in live:
        lines.append(interim_line(label, live["interims"]))
    speculative = model.get("speculative") or {}
    if speculative:
        lines.append(f"| {label}: speculative run / used / discarded / skipped; wasted share of "
                     f"model time | {speculative['run']} / {speculative['used']} / {speculative['discarded']} / "
                     f"{speculative['skipped']}; {model.get('speculative_wasted_share')} |")
    if live.get("kafka_writes"):
        lines.append(kafka_writes_line(label, live["kafka_writes"]))
    if live.get("stages"):
        lines.append(f"| {label}: a final's way, p50/p95 from the end of speech (worker's /stages) "
                     f"| {stage_line(live['stages'])} |")
    return lines


def kafka_writes_line(label: str, writes: dict[str, Any]) -> str:
    """One row per run: bytes written to Kafka per second of call, per topic, before replication."""
    per_topic = ", ".join(f"{kind} {_kilobytes(value)}" for kind, value in writes["bytes_per_call_second"].items())
    short = "" if writes.get("complete", True) else " (a topic was not read to its end)"
    return (f"| {label}: written to Kafka per call-second (key + value, before replication); changelog bytes "
            f"per audio byte | {per_topic}; {writes['changelog_per_audio_byte']}{short} |")


def _kilobytes(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f} kB"


def interim_line(label: str, figures: dict[str, Any]) -> str:
    """One row per run: the interims' counts, timing (bench-side, from capture) and stability."""
    word, first = figures["word_delay_s"], figures["first_interim_after_speech_start_s"]
    return (f"| {label}: interims received (published / skipped / dropped), model busy on interims; word delay "
            f"p50/p95; first interim after speech start p50/p95; interim words changed (stable only); utterances "
            f"with interims | {figures['received']} ({figures['published']} / {figures['skipped']} / "
            f"{figures['dropped']}), {figures['model_busy_fraction']}; {word['p50']} / {word['p95']} s; "
            f"{first['p50']} / {first['p95']} s; {figures['changed_share']} ({figures['stable_changed_share']}); "
            f"{figures['utterances_with_interims_share']} |")
