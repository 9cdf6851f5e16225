"""The CTranslate2 translation backend: models converted once with `ct2-transformers-converter`,
served from one local directory (CALLSTT_CT2_TRANSLATION_DIR), one model per subdirectory.

Two families:
- multilingual NLLB-200 / M2M-100: the languages are the ones whose language token (NLLB
  `eng_Latn`, M2M `__en__`) is in the model's vocabulary; the source is
  `[source token] + tokens + ["</s>"]` and the target token is forced as the first output token
  (`target_prefix`), then stripped;
- bilingual opus-mt / Marian: one direction per model, named by a `callstt-pair.json`
  (`{"source": "en", "target": "de"}`) in its folder, else by a folder name ending in
  `-<source>-<target>` (`opus-mt-en-de`); the source is `tokens + ["</s>"]`.
When several models cover a pair, a bilingual one wins (smaller and usually better for its pair).

Tokenizers: the folder's `tokenizer.json` through the `tokenizers` library (no transformers or
torch at run time); else sentencepiece files (`source.spm` + `target.spm` as opus-mt ships them,
or `sentencepiece.bpe.model` as M2M-100 does) through the optional `sentencepiece` package
(`pip install callstt[translation]`). Nothing is downloaded: CALLSTT_ALLOW_HUB_DOWNLOAD does not
apply here, the errors say how to convert a model into the directory.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
from tokenizers import Tokenizer

from callstt.schemas.errors import CallsttError

CT2_DIR_ENV = "CALLSTT_CT2_TRANSLATION_DIR"
PAIR_FILE = "callstt-pair.json"
MULTILINGUAL_STYLES = ("nllb", "m2m")

# ISO 639-1 -> NLLB-200 (FLORES-200) code, for the languages callers most often speak. A language
# missing here is simply not offered by an NLLB model, even though the model may know it.
NLLB_CODES = {
    "ar": "arb_Arab", "bn": "ben_Beng", "ca": "cat_Latn", "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn",
    "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fr": "fra_Latn",
    "he": "heb_Hebr", "hi": "hin_Deva", "hu": "hun_Latn", "id": "ind_Latn", "it": "ita_Latn", "ja": "jpn_Jpan",
    "ko": "kor_Hang", "ms": "zsm_Latn", "nl": "nld_Latn", "pl": "pol_Latn", "pt": "por_Latn", "ro": "ron_Latn",
    "ru": "rus_Cyrl", "sv": "swe_Latn", "ta": "tam_Taml", "th": "tha_Thai", "tl": "tgl_Latn", "tr": "tur_Latn",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "vi": "vie_Latn", "zh": "zho_Hans",
}
_M2M_TOKEN = re.compile(r"^__([a-z]{2})__$")
_PAIR_IN_NAME = re.compile(r"-([a-z]{2})-([a-z]{2})$")
_ISO_CODE = re.compile(r"^[a-z]{2}$")

# Vocabulary files the converter writes: one shared, or one per side (the target side names the
# tokens a target prefix may use).
_VOCABULARIES = ("shared_vocabulary.json", "shared_vocabulary.txt", "target_vocabulary.json", "target_vocabulary.txt")
_SPM_FILES = (("source.spm", "target.spm"), ("sentencepiece.bpe.model", "sentencepiece.bpe.model"))

# Transcript sentences are short; bounding the input and the output keeps one runaway sentence
# (or a model stuck repeating itself) from holding the translator for seconds.
MAX_INPUT_TOKENS = 512
MAX_DECODING_TOKENS = 256

CONVERT_HINT = (
    "convert a model once, on a machine with hub access (CALLSTT_ALLOW_HUB_DOWNLOAD does not download "
    "translation models): pip install ctranslate2 transformers torch sentencepiece; ct2-transformers-converter "
    "--model facebook/nllb-200-distilled-600M --output_dir $CALLSTT_CT2_TRANSLATION_DIR/nllb-200-distilled-600M "
    "--quantization int8 --copy_files tokenizer.json (opus-mt: --model Helsinki-NLP/opus-mt-en-de --output_dir "
    "$CALLSTT_CT2_TRANSLATION_DIR/opus-mt-en-de --copy_files source.spm target.spm)"
)


class TranslationModelError(CallsttError, ValueError):
    """A translation model directory cannot be used; the message names the folder and what to do."""


@dataclass(frozen=True)
class ModelFolder:
    """One converted model, as found on disk (nothing loaded yet)."""

    path: Path
    style: str  # "nllb", "m2m" (language tokens) or "plain" (a bilingual model without them)
    pairs: frozenset[tuple[str, str]]
    bilingual: bool  # its pair was declared (callstt-pair.json or folder name), not read from the vocabulary
    tokenizer: tuple[str, ...]  # ("tokenizer.json",) or (source .spm, target .spm)

    @property
    def name(self) -> str:
        return self.path.name


# --- finding the models (cheap: small files only, no weights) -----------------------------------------

def language_token(code: str, style: str) -> str | None:
    """The token that names ISO 639-1 `code` to a model of `style`; None for a plain bilingual model."""
    if style == "nllb":
        return NLLB_CODES.get(code)
    if style == "m2m":
        return f"__{code}__"
    return None


def token_style(vocabulary: set[str]) -> str:
    """Which language tokens the vocabulary has: "nllb", "m2m" or "plain" (none)."""
    if any(token in vocabulary for token in NLLB_CODES.values()):
        return "nllb"
    if any(_M2M_TOKEN.match(token) for token in vocabulary):
        return "m2m"
    return "plain"


def languages_in(vocabulary: set[str], style: str) -> set[str]:
    """The ISO 639-1 codes whose language token is in the vocabulary."""
    if style == "nllb":
        return {code for code, token in NLLB_CODES.items() if token in vocabulary}
    if style == "m2m":
        return {match.group(1) for match in map(_M2M_TOKEN.match, vocabulary) if match}
    return set()


def pair_from_name(name: str) -> tuple[str, str] | None:
    """("en", "de") from a folder named like "opus-mt-en-de"; None when the name ends otherwise."""
    match = _PAIR_IN_NAME.search(name.lower())
    return (match.group(1), match.group(2)) if match and match.group(1) != match.group(2) else None


def declared_pair(folder: Path) -> tuple[str, str] | None:
    """The pair in the folder's callstt-pair.json, if it has one."""
    file = folder / PAIR_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        pair = (str(data["source"]).strip().lower(), str(data["target"]).strip().lower())
    except (ValueError, KeyError, TypeError) as error:
        raise TranslationModelError(f"{file}: not a pair ({error}); "
                                    f"write {{\"source\": \"en\", \"target\": \"de\"}}") from None
    if not all(_ISO_CODE.match(code) for code in pair) or pair[0] == pair[1]:
        raise TranslationModelError(f"{file}: {pair[0]!r} -> {pair[1]!r} is not a pair of two ISO 639-1 codes")
    return pair


def read_vocabulary(folder: Path) -> set[str]:
    """The model's (target) vocabulary tokens, from the file the converter wrote."""
    for name in _VOCABULARIES:
        file = folder / name
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            return set(json.loads(text)) if name.endswith(".json") else set(text.splitlines())
    raise TranslationModelError(f"{folder}: no vocabulary file ({', '.join(_VOCABULARIES)}): the conversion is "
                                f"incomplete; convert the model again")


def tokenizer_files(folder: Path) -> tuple[str, ...]:
    """The tokenizer files to load: tokenizer.json if present, else a pair of sentencepiece models."""
    if (folder / "tokenizer.json").is_file():
        return ("tokenizer.json",)
    for source, target in _SPM_FILES:
        if (folder / source).is_file() and (folder / target).is_file():
            _sentencepiece(folder)  # fail now, at start, rather than on the first transcript
            return (source, target)
    raise TranslationModelError(
        f"{folder}: no tokenizer: copy tokenizer.json (or source.spm and target.spm, or sentencepiece.bpe.model) "
        f"next to model.bin, e.g. ct2-transformers-converter ... --copy_files tokenizer.json")


def _sentencepiece(folder: Path):
    try:
        # the optional translation extra: only opus-mt models need it
        import sentencepiece
    except ImportError:
        raise TranslationModelError(
            f"{folder}: its tokenizer is a sentencepiece model and the sentencepiece package is not installed: "
            f"pip install 'callstt[translation]' (or pip install sentencepiece), or copy a tokenizer.json "
            f"next to model.bin") from None
    return sentencepiece


def read_model_folder(folder: Path) -> ModelFolder:
    """What one subdirectory serves; TranslationModelError naming the folder when it cannot serve anything."""
    if not (folder / "model.bin").is_file():
        raise TranslationModelError(f"{folder}: no model.bin: not a CTranslate2 model; {CONVERT_HINT}")
    tokenizer = tokenizer_files(folder)
    vocabulary = read_vocabulary(folder)
    style = token_style(vocabulary)
    pair = declared_pair(folder)
    if pair is None and style == "plain":
        pair = pair_from_name(folder.name)
    if pair is not None:  # bilingual; a multilingual model may be pinned to one pair too, then needs its tokens
        missing = [code for code in pair if language_token(code, style) not in vocabulary] if style != "plain" else []
        if missing:
            raise TranslationModelError(f"{folder}: its vocabulary has no language token for {', '.join(missing)}")
        return ModelFolder(folder, style, frozenset({pair}), True, tokenizer)
    languages = languages_in(vocabulary, style)
    if len(languages) < 2:
        raise TranslationModelError(
            f"{folder}: unknown pair: no language tokens in its vocabulary (NLLB eng_Latn, M2M __en__), no "
            f"{PAIR_FILE} ({{\"source\": \"en\", \"target\": \"de\"}}) and its name does not end in "
            f"-<source>-<target> (e.g. opus-mt-en-de)")
    pairs = frozenset((source, target) for source in languages for target in languages if source != target)
    return ModelFolder(folder, style, pairs, False, tokenizer)


def find_models(directory: str | os.PathLike) -> list[ModelFolder]:
    """Every model of the directory, by folder name; TranslationModelError when there are none."""
    if not str(directory).strip():
        raise TranslationModelError(f"{CT2_DIR_ENV} is not set: the ctranslate2 translation backend serves the "
                                    f"models of that directory; {CONVERT_HINT}")
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise TranslationModelError(f"{CT2_DIR_ENV}={root}: no such directory; {CONVERT_HINT}")
    folders = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise TranslationModelError(f"{CT2_DIR_ENV}={root} holds no model folders; {CONVERT_HINT}")
    return [read_model_folder(folder) for folder in folders]


def route_table(models: list[ModelFolder]) -> dict[tuple[str, str], ModelFolder]:
    """Pair -> the model that translates it: bilingual models first, then by folder name."""
    table: dict[tuple[str, str], ModelFolder] = {}
    for model in sorted(models, key=lambda model: (not model.bilingual, model.name)):
        for pair in model.pairs:
            table.setdefault(pair, model)
    return table


# --- tokenizers ---------------------------------------------------------------------------------------

class _JsonTokenizer:
    """tokenizer.json through the `tokenizers` library (the Rust one transformers uses, without transformers)."""

    def __init__(self, file: Path) -> None:
        self._tokenizer = Tokenizer.from_file(str(file))

    def tokens(self, text: str) -> list[str]:
        # Without special tokens: the language token and </s> are added by the backend, per family.
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def text(self, tokens: list[str]) -> str:
        ids = [token_id for token_id in map(self._tokenizer.token_to_id, tokens) if token_id is not None]
        return self._tokenizer.decode(ids, skip_special_tokens=True)


class _SentencePieceTokenizer:
    """A source and a target sentencepiece model (opus-mt), or one model for both sides (M2M-100)."""

    def __init__(self, source: Path, target: Path) -> None:
        sentencepiece = _sentencepiece(source.parent)
        self._source = sentencepiece.SentencePieceProcessor(model_file=str(source))
        self._target = (self._source if target == source
                        else sentencepiece.SentencePieceProcessor(model_file=str(target)))

    def tokens(self, text: str) -> list[str]:
        return self._source.encode(text, out_type=str)

    def text(self, tokens: list[str]) -> str:
        return self._target.decode(tokens)


def load_tokenizer(model: ModelFolder):
    files = [model.path / name for name in model.tokenizer]
    return _JsonTokenizer(files[0]) if len(files) == 1 else _SentencePieceTokenizer(*files)


# --- the backend --------------------------------------------------------------------------------------

class CTranslate2Backend:
    """The models of one directory; pairs() is known at construction, the weights load on load() or
    on the first translate() of a model's pair (under a lock; CTranslate2 translators are thread-safe)."""

    name = "ctranslate2"

    def __init__(self, directory: str | os.PathLike, *, compute_type: str = "int8", intra_threads: int | None = None,
                 beam_size: int = 2) -> None:
        self.directory = Path(directory)
        self.models = find_models(directory)
        self._routes = route_table(self.models)
        self.model = f"ctranslate2 {', '.join(model.name for model in self.models)}"
        self.compute_type = compute_type
        # The translator shares the machine with the transcriber: a few threads, not all of them.
        self.intra_threads = intra_threads or max(1, min(4, os.cpu_count() or 1))
        self.beam_size = beam_size
        self._loaded: dict[str, tuple[object, object]] = {}  # folder name -> (translator, tokenizer)
        self._lock = threading.Lock()

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._routes)

    def model_for(self, source: str, target: str) -> str:
        """The label of the model that translates this pair, e.g. "ctranslate2 opus-mt-en-de"."""
        return f"ctranslate2 {self._route(source, target).name}"

    def load(self) -> None:
        for model in self.models:
            self._load(model)

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        model = self._route(source, target)
        translator, tokenizer = self._load(model)
        source_token, target_token = language_token(source, model.style), language_token(target, model.style)
        todo = [index for index, text in enumerate(texts) if text.strip()]  # empty text stays empty
        head = [source_token] if source_token else []
        batch = [head + tokenizer.tokens(texts[index])[:MAX_INPUT_TOKENS - 2] + ["</s>"] for index in todo]
        translated = [""] * len(texts)
        if not batch:
            return translated
        longest = max(map(len, batch))
        results = translator.translate_batch(
            batch, target_prefix=[[target_token]] * len(batch) if target_token else None,
            beam_size=self.beam_size, max_input_length=MAX_INPUT_TOKENS,
            # Translations are rarely 3 times longer than their source; a bound stops a looping model.
            max_decoding_length=min(MAX_DECODING_TOKENS, 3 * longest + 10))
        for index, result in zip(todo, results):
            tokens = result.hypotheses[0]
            if target_token and tokens[:1] == [target_token]:
                tokens = tokens[1:]
            translated[index] = tokenizer.text(tokens).strip()
        return translated

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()  # the translators free their memory when dropped

    def _route(self, source: str, target: str) -> ModelFolder:
        model = self._routes.get((source, target))
        if model is None:
            raise ValueError(f"ctranslate2: no model in {self.directory} translates {source}->{target}")
        return model

    def _load(self, model: ModelFolder) -> tuple:
        with self._lock:
            if model.name not in self._loaded:
                translator = ctranslate2.Translator(str(model.path), device="cpu", compute_type=self.compute_type,
                                                    inter_threads=1, intra_threads=self.intra_threads)
                self._loaded[model.name] = (translator, load_tokenizer(model))
            return self._loaded[model.name]
