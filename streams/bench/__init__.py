"""`callstt bench`: how close the pipeline runs to the model alone, its latency, and how many live
calls one machine carries (issue 7). Results are ratios measured in one run, so they hold on a
noisy shared machine; nothing here asserts a threshold.

    from callstt.streams.bench import run_bench
    report = run_bench(quick=True, out_dir=".local/bench")   # bench.json + bench.md there

Sections of the report (JSON keys):
- ``workload``: the generated calls (espeak-ng, English and Vietnamese, fixed seed, silences);
- ``floor``: the same utterances the worker cuts, transcribed in-process by the same backend,
  model, compute type and threads, sequentially (the pipeline core's model step, mode single: language choice
  included): the model-alone time;
- ``pipeline``: the same calls published as fast as the producer can to one worker
  subprocess on the real broker; first chunk produced -> last transcript consumed;
  ``overhead = pipeline_s / floor_s`` and where the rest goes (worker /metrics);
- ``live``: K calls at real-time pace (~50 % speech), end-of-speech -> transcript received
  p50/p95/p99, the part after the endpoint decision, and lag growth; ``live[K].interims``: the
  interim transcripts (partial topic) of those calls: word delay, first interim after speech
  start, interim words the final changed, their model time (``--partials off`` runs without);
- ``capacity``: the largest K with p95 after the endpoint < 1.5 s and no lag growth;
- ``worker``: start -> /health 200, model load seconds, RSS idle and peak under load;
- ``accuracy``: English WER and language-ID accuracy, floor and pipeline;
- ``accuracy_real_speech``: real recordings (``--speech DIR``, default ../shared/speech when it
  exists): WER/CER and language-ID per language, the model alone on whole clips against the
  worker (without and with a vi,en call restriction), and language ID by utterance length and
  sample rate (``accuracy``; ``callstt bench --accuracy-only`` runs it alone, left out of --quick);
- ``accuracy_synthetic``: rare-word recall with and without a call vocabulary, redaction
  precision/recall (``redaction_set``), invented transcripts per hour of non-speech with the guard;
- ``inference_modes``: one utterance per model call vs batched vs packed (models.asr.batching),
  throughput and WER on the same utterances;
- ``chain`` (``callstt bench --chain`` only): English conversations at live pace through the
  worker, the translator (into Portuguese) and the speaker: per stage and end to end, p50/p95
  from the end of speech to the first synthesized chunk, against 1.5 s.

Modules: ``workload`` (the generated calls), ``floor`` (the in-process floor, the inference
modes, accuracy), ``sections`` (pipeline, live and capacity on a worker subprocess,
``streams.bench.subprocesses``), ``interims`` (the live section's interim figures), ``chain`` (the
translation chain, ``--chain``: end of speech -> transcript -> translation -> first audio), ``stats`` (percentiles, Prometheus samples, the machine),
``accuracy`` and ``redaction_set`` (the accuracy sections), ``report`` (bench.md), ``run``
(``run_bench`` and the command line, ``python -m callstt.streams.bench``).
"""


from callstt.streams.bench.collecting import Arrival, collect
from callstt.streams.bench.floor import call_accuracy, cut_utterances, run_floor, run_inference_modes
from callstt.streams.bench.report import markdown
from callstt.streams.bench.run import BENCH_BROKER_NAME, BENCH_BROKER_PORT, main, run_bench
from callstt.streams.bench.sections import P95_LIMIT_S, run_live, run_pipeline
from callstt.streams.bench.stats import histogram_quantile, machine_info, metric_sum, percentile, summary
from callstt.streams.bench.workload import ENCODING, TELEPHONE_RATE, BenchCall, Synth, make_call, make_workload

__all__ = [
    "BENCH_BROKER_NAME", "BENCH_BROKER_PORT", "ENCODING", "P95_LIMIT_S", "TELEPHONE_RATE",
    "Arrival", "BenchCall", "Synth", "call_accuracy", "collect", "cut_utterances", "histogram_quantile",
    "machine_info", "main", "make_call", "make_workload", "markdown", "metric_sum", "percentile",
    "run_bench", "run_floor", "run_inference_modes", "run_live", "run_pipeline", "summary",
]
