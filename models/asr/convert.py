"""Convert a transformers Whisper checkpoint (PhoWhisper or any other) to CTranslate2 for speed.

The conversion is ctranslate2's own `TransformersConverter`; the output is a model directory the
faster-whisper backend loads (model.bin, config.json, vocabulary.json, tokenizer.json,
preprocessor_config.json) plus `callstt-converted.json` saying what it came from. Default
quantization int8: fine-tuned checkpoints (PhoWhisper among them) are reported to turn to
gibberish after float16 conversion (faster-whisper issue 825), so float16 is a choice, never the
default; the parity test (tests/integration/test_vietnamese_route.py) compares the converted
model's greedy tokens with transformers' own.

    python -m callstt.models.asr.convert vinai/PhoWhisper-small --allow-hub        # into the model cache
    python -m callstt.models.asr.convert ./PhoWhisper-small --output ./phowhisper-small-ct2 --quantization float32

Without --output the model goes where the PhoWhisper route looks for it
(`<model cache>/converted/<name>-<quantization>`, see models.asr.store.converted_dir_for), so a worker
with CALLSTT_PHOWHISPER_BACKEND=auto or converted picks it up. Needs torch and transformers
(`pip install -e ".[vietnamese]"`).

This module reads no environment (models/ does not depend on the settings in streams/): run as
`python -m callstt.models.asr.convert`, hub downloads are off unless --allow-hub and the cache is --cache-dir or
~/.cache/callstt/models. `callstt convert` is the same command with both defaults taken from the
settings (CALLSTT_ALLOW_HUB_DOWNLOAD, CALLSTT_MODEL_CACHE_DIR), passed to `main`.

--benchmark prints the converted route's speed against transformers' (`benchmark`: fastest of 5 runs,
same weights, same utterance). It is a measurement for people, not a test: no test compares the times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from faster_whisper.audio import decode_audio

from callstt.models.asr.faster_whisper_backend import FasterWhisperBackend
from callstt.models.asr.store import (QUANTIZATIONS, ModelFileError, check_model_dir, converted_dir_for,
                                      default_cache_dir, download_checkpoint, is_ctranslate2_dir,
                                      is_transformers_checkpoint)
from callstt.models.asr.transformers_backend import TransformersBackend
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.voices.synth import VIETNAMESE_SENTENCES, synthesize

log = logging.getLogger(__name__)

DEFAULT_QUANTIZATION = "int8"
MARKER_FILE = "callstt-converted.json"
# Files faster-whisper reads next to model.bin, copied from the checkpoint when it has them.
COPIED_FILES = ("tokenizer.json", "preprocessor_config.json")


def convert_checkpoint(checkpoint: Path, output: Path, quantization: str = DEFAULT_QUANTIZATION,
                       force: bool = False, source: str | None = None) -> Path:
    """Convert the transformers checkpoint directory `checkpoint` into the CTranslate2 directory `output`.

    The model is written next to `output` and renamed into place, so an interrupted conversion never
    leaves a half model where the route looks. `source` is recorded in the marker file (default: the
    checkpoint directory's name). Returns `output`.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if quantization not in QUANTIZATIONS:
        raise ModelFileError(f"unknown quantization '{quantization}': use one of {', '.join(QUANTIZATIONS)}")
    if not is_transformers_checkpoint(checkpoint):
        raise ModelFileError(f"{checkpoint} is not a transformers Whisper checkpoint (config.json with model_type "
                             f"whisper, and model.safetensors or pytorch_model.bin)")
    if output.exists() and not force:
        raise ModelFileError(f"{output} already exists: pass --force to replace it")
    try:
        # the converter needs transformers: the optional vietnamese extra
        import ctranslate2
        import transformers
        from ctranslate2.converters import TransformersConverter
    except ImportError as error:
        raise ModelFileError(f"converting needs torch and transformers ({error}): "
                             f"pip install -e \".[vietnamese]\"") from error

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    copied = [name for name in COPIED_FILES if (checkpoint / name).is_file()]
    try:
        converter = TransformersConverter(str(checkpoint), copy_files=copied or None)
        converter.convert(str(partial), quantization=quantization, force=True)
        if not (partial / "tokenizer.json").is_file():
            # Checkpoints that ship only vocab.json + merges.txt: faster-whisper needs tokenizer.json
            # (without it, it would fetch one from the hub).
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
            tokenizer.backend_tokenizer.save(str(partial / "tokenizer.json"))
        (partial / MARKER_FILE).write_text(json.dumps({
            "source": source or checkpoint.name, "quantization": quantization,
            "ctranslate2": ctranslate2.__version__, "transformers": transformers.__version__,
        }, indent=2) + "\n")
        check_model_dir(partial)
        if output.exists():
            shutil.rmtree(output)
        partial.rename(output)
    except ModelFileError:
        raise
    except Exception as error:  # the converter raises many kinds (ValueError, RuntimeError, OSError, ...)
        raise ModelFileError(f"converting {checkpoint} to CTranslate2 ({quantization}) failed: {error}") from error
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("converted %s to %s (%s)", checkpoint, output, quantization)
    return output


def convert_reference(reference: str, output: Path | None = None, quantization: str = DEFAULT_QUANTIZATION,
                      force: bool = False, cache_dir: Path | None = None, allow_hub: bool = False,
                      reuse_existing: bool = False) -> Path:
    """Convert a checkpoint given as a local directory or a hub id (downloaded only when `allow_hub`).
    Without `output` the result goes to the model cache, where the PhoWhisper route finds it; with
    `reuse_existing` an existing conversion there is returned as it is."""
    cache_dir = cache_dir or default_cache_dir()
    target = Path(output) if output else converted_dir_for(reference, quantization, cache_dir)
    if reuse_existing and not force and is_ctranslate2_dir(target):
        return target
    local = Path(reference).expanduser()
    if local.exists() or reference.startswith((".", "/", "~")):
        checkpoint = local
    elif "/" in reference:
        checkpoint = download_checkpoint(reference, cache_dir, allow_hub)
    else:
        raise ModelFileError(f"unknown checkpoint reference '{reference}': give a local checkpoint directory or a "
                             f"hub id such as vinai/PhoWhisper-small")
    if is_ctranslate2_dir(checkpoint):
        raise ModelFileError(f"{checkpoint} is already a CTranslate2 model: use it as it is")
    return convert_checkpoint(checkpoint, target, quantization, force=force, source=reference)


def benchmark(checkpoint: Path, converted: Path, audio, language: str = "vi", runs: int = 5,
              cpu_threads: int = 2, device: str = "cpu") -> dict[str, float]:
    """Milliseconds per utterance (the fastest of `runs`, after a warm-up) through the transformers
    route (float32 on CPU) and the converted route (the converted model's own weights type), same
    weights, same audio. The transformers route goes first, so CTranslate2's worker threads, which
    may still busy-wait after a call, cannot slow torch down."""
    routes = {
        "transformers": lambda: TransformersBackend(checkpoint, "benchmark", device, "auto", cpu_threads),
        # "default": run the weights as converted (int8 stays int8; float16 runs as float32 on a CPU).
        "converted": lambda: FasterWhisperBackend(converted, "benchmark", device, "default", cpu_threads),
    }
    results: dict[str, float] = {}
    for name, load in routes.items():
        backend = load()
        backend.transcribe(audio, language)  # warm-up
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            backend.transcribe(audio, language)
            timings.append(1000 * (time.perf_counter() - started))
        results[name] = min(timings)
        del backend
    results["speedup"] = results["transformers"] / results["converted"]
    return results


def build_parser(allow_hub: bool = False, cache_dir: Path | None = None) -> argparse.ArgumentParser:
    """The command line; `allow_hub` and `cache_dir` are the defaults of --allow-hub and --cache-dir."""
    parser = argparse.ArgumentParser(
        prog="python -m callstt.models.asr.convert",
        description="Convert a transformers Whisper checkpoint (e.g. PhoWhisper) to CTranslate2 for faster-whisper. "
                    "Reads no environment: `callstt convert` takes --allow-hub and --cache-dir from the settings "
                    "(CALLSTT_ALLOW_HUB_DOWNLOAD, CALLSTT_MODEL_CACHE_DIR).")
    parser.add_argument("checkpoint", help="local checkpoint directory or hub id (e.g. vinai/PhoWhisper-small)")
    parser.add_argument("--output", "-o", type=Path, default=None,
                        help="output directory (default: the model cache, where the PhoWhisper route looks)")
    parser.add_argument("--quantization", "-q", choices=QUANTIZATIONS, default=DEFAULT_QUANTIZATION,
                        help="weights type (default int8; float16 is known to break some fine-tuned checkpoints)")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    parser.add_argument("--allow-hub", action="store_true", default=allow_hub,
                        help=f"allow downloading a hub id (default: {'on' if allow_hub else 'off'})")
    parser.add_argument("--cache-dir", type=Path, default=cache_dir,
                        help=f"model cache (default: {cache_dir or default_cache_dir()})")
    parser.add_argument("--benchmark", action="store_true",
                        help="then time one utterance through transformers and through the converted model "
                             "(a Vietnamese sentence spoken by espeak-ng, or --audio)")
    parser.add_argument("--audio", type=Path, default=None, help="audio file for --benchmark")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for --benchmark (default 2)")
    return parser


def main(argv: list[str] | None = None, *, allow_hub: bool = False, cache_dir: Path | None = None) -> int:
    """`python -m callstt.models.asr.convert`: convert, print the output directory, and with --benchmark time both routes.

    `allow_hub` and `cache_dir` are the defaults of --allow-hub and --cache-dir: this module reads no
    environment; `callstt convert` (streams/cli.py) passes the settings' values."""
    args = build_parser(allow_hub, cache_dir).parse_args(argv)
    try:
        path = convert_reference(args.checkpoint, args.output, args.quantization, args.force, args.cache_dir,
                                 args.allow_hub, reuse_existing=args.benchmark)
    except ModelFileError as error:
        print(f"convert: error: {error}", file=sys.stderr)
        return 1
    print(path)
    if args.benchmark:
        print_benchmark(args, path)
    return 0


def print_benchmark(args: argparse.Namespace, converted: Path) -> None:
    """--benchmark: one utterance through the transformers route and the converted route, timed and printed."""
    audio = decode_audio(str(args.audio)) if args.audio else synthesize(VIETNAMESE_SENTENCES[0], "vi")
    checkpoint = Path(args.checkpoint).expanduser()
    if not checkpoint.is_dir():
        checkpoint = download_checkpoint(args.checkpoint, args.cache_dir or default_cache_dir(), args.allow_hub)
    result = benchmark(checkpoint, converted, audio, cpu_threads=args.threads)
    print(f"{len(audio) / SAMPLE_RATE:.1f} s utterance, {args.threads} threads: transformers "
          f"{result['transformers']:.0f} ms, converted ({args.quantization}) {result['converted']:.0f} ms: "
          f"{result['speedup']:.1f}x faster")


if __name__ == "__main__":
    sys.exit(main())
