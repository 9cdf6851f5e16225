"""The ctranslate2 translation backend (models/translation/ct2.py) without any hub: tiny checkpoints
built here, converted with CTranslate2's own converter, served from one directory.

The checkpoints are transformers models with small dimensions and random weights from a fixed seed,
each with a tokenizer.json trained here on a few sentences with the `tokenizers` library:
- tiny-nllb: the NLLB-200 architecture (M2M100ForConditionalGeneration) with NLLB language tokens
  (eng_Latn, por_Latn, vie_Latn, deu_Latn);
- tiny-m2m: the same architecture with M2M-100 language tokens (__en__, __ja__, __ko__);
- opus-tiny-en-de: a bilingual Marian model (opus-mt's architecture), its pair in its folder name;
- marian-tiny: another Marian model, its pair (pt->en) in a callstt-pair.json;
- opus-tiny-spm-en-de (a directory of its own): a Marian model as Helsinki-NLP ships opus-mt, with only
  source.spm + target.spm (sentencepiece models trained here) and a vocab.json, no tokenizer.json.
Random weights translate into garbage: the tests check what a user checks (the folders convert, the
backend finds the pairs, one deterministic string per text, the router's statuses), never the words.
Building and converting all five takes about a second once torch is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest

from callstt.models.translation.backends import TranslationRouter, load_translation_router
from callstt.models.translation.ct2 import CT2_DIR_ENV, CTranslate2Backend, TranslationModelError, load_tokenizer
from callstt.streams.settings import Settings

# Building the checkpoints needs transformers and torch: the Vietnamese extra, which CI and scripts/setup
# install. Only an explicit opt-out of that extra (CALLSTT_NO_VIETNAMESE=1) skips; a missing torch
# otherwise fails.
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.environ.get("CALLSTT_NO_VIETNAMESE") == "1",
                                 reason="CALLSTT_NO_VIETNAMESE=1: transformers/torch (the Vietnamese extra) absent")]

SEED = 7
SENTENCES = [
    "Hello, how are you today?", "Thank you very much for calling.", "Please call me back tomorrow morning.",
    "Olá, como você está hoje?", "Muito obrigado por ligar.", "Por favor, me ligue amanhã de manhã.",
    "Xin chào, bạn khỏe không?", "Cảm ơn bạn rất nhiều.", "Guten Tag, wie geht es Ihnen?", "Vielen Dank.",
    "こんにちは。", "안녕하세요.",
]
NLLB_TOKENS = ["eng_Latn", "por_Latn", "vie_Latn", "deu_Latn"]
M2M_TOKENS = ["__en__", "__ja__", "__ko__"]
# The sentencepiece models' sentences; the folder's pair comes from its name, as for opus-mt-en-de (a name
# must end in -<source>-<target>: "opus-tiny-en-de-spm" would name no pair).
SPM_ENGLISH = ["Hello, how are you today?", "Thank you very much for calling.", "Please call me back tomorrow.",
               "Hello there."]
SPM_GERMAN = ["Guten Tag, wie geht es Ihnen?", "Vielen Dank für Ihren Anruf.", "Bitte rufen Sie mich morgen zurück.",
              "Hallo."]
SPM_FOLDER = "opus-tiny-spm-en-de"


# --- the tiny checkpoints -----------------------------------------------------------------------------

def train_tokenizer(directory: Path, specials: list[str], added: list[str]) -> int:
    """A small sentencepiece-like BPE tokenizer.json: `specials` get the first ids, `added` the last ones
    (as in NLLB, whose language tokens follow the pieces, and Marian, whose <pad> is the last token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tokenizer.train_from_iterator(SENTENCES * 3, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                                     show_progress=False))
    tokenizer.add_special_tokens(added)
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    # The converter reads the vocabulary through transformers' AutoTokenizer: the generic fast tokenizer will do.
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        **({"bos_token": "<s>"} if "<s>" in specials else {})}))
    return tokenizer.get_vocab_size()


def write_m2m(directory: Path, language_tokens: list[str]) -> Path:
    """NLLB-200 / M2M-100 layout: <s> <pad> </s> <unk>, the pieces, then the language tokens."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    size = train_tokenizer(directory, ["<s>", "<pad>", "</s>", "<unk>"], language_tokens)
    config = M2M100Config(vocab_size=size, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                          max_position_embeddings=300, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                          decoder_start_token_id=2)
    torch.manual_seed(SEED)
    M2M100ForConditionalGeneration(config).eval().save_pretrained(directory)
    return directory


def write_marian(directory: Path) -> Path:
    """opus-mt layout: </s> <unk>, the pieces, then <pad> (the decoder start, dropped by the converter)."""
    save_marian(directory, train_tokenizer(directory, ["</s>", "<unk>"], ["<pad>"]))
    return directory


def save_marian(directory: Path, size: int) -> None:
    """A tiny Marian model for a vocabulary of `size` tokens: </s> first (eos), <pad> last (decoder start)."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(vocab_size=size, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                          max_position_embeddings=300, pad_token_id=size - 1, eos_token_id=0,
                          decoder_start_token_id=size - 1, forced_eos_token_id=0)
    torch.manual_seed(SEED)
    MarianMTModel(config).eval().save_pretrained(directory)


def train_sentencepiece(file: Path, lines: list[str]) -> list[str]:
    """A tiny sentencepiece model saved as `file` (opus-mt's source.spm / target.spm); its pieces, by id."""
    import sentencepiece  # the `translation` extra, which CI and scripts/setup install: missing, this fails

    corpus = file.with_suffix(".txt")
    corpus.write_text("\n".join(lines * 5) + "\n", encoding="utf-8")
    # A few sentences hold fewer pieces than any usual vocabulary: hard_vocab_limit=False lets the trainer
    # stop short of vocab_size instead of failing.
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(file.with_suffix("")), vocab_size=80, model_type="unigram",
        hard_vocab_limit=False, character_coverage=1.0, minloglevel=2)
    file.with_suffix(".model").rename(file)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(file))
    return [processor.id_to_piece(index) for index in range(processor.get_piece_size())]


def write_marian_spm(directory: Path) -> Path:
    """opus-mt as Helsinki-NLP ships it: source.spm, target.spm and one vocab.json for both sides
    (</s> <unk>, the pieces of both sentencepiece models, then <pad>), read by transformers' MarianTokenizer."""
    from transformers import MarianTokenizer

    spm = directory.with_name(f"{directory.name}-files")
    spm.mkdir(parents=True)
    pieces = [*train_sentencepiece(spm / "source.spm", SPM_ENGLISH),
              *train_sentencepiece(spm / "target.spm", SPM_GERMAN)]
    controls = {"<unk>", "<s>", "</s>"}  # sentencepiece's own; Marian's vocabulary has </s> and <unk> first, no <s>
    tokens = ["</s>", "<unk>", *dict.fromkeys(piece for piece in pieces if piece not in controls), "<pad>"]
    (spm / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    directory.mkdir(parents=True)
    tokenizer = MarianTokenizer(str(spm / "source.spm"), str(spm / "target.spm"), str(spm / "vocab.json"))
    tokenizer.save_pretrained(directory)  # source.spm, target.spm, vocab.json, tokenizer_config.json
    save_marian(directory, len(tokens))
    return directory


def convert(checkpoint: Path, output: Path, files: tuple[str, ...] = ("tokenizer.json",)) -> Path:
    """What docs/agents.md tells users to run (ct2-transformers-converter ... --copy_files tokenizer.json)."""
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(checkpoint), copy_files=list(files)).convert(str(output), quantization="int8")
    return output


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """CALLSTT_CT2_TRANSLATION_DIR with the four converted models."""
    work = tmp_path_factory.mktemp("ct2-translation")
    root = work / "models"
    convert(write_m2m(work / "hf-nllb", NLLB_TOKENS), root / "tiny-nllb")
    convert(write_m2m(work / "hf-m2m", M2M_TOKENS), root / "tiny-m2m")
    convert(write_marian(work / "hf-marian"), root / "opus-tiny-en-de")
    convert(write_marian(work / "hf-marian-2"), root / "marian-tiny")
    (root / "marian-tiny" / "callstt-pair.json").write_text(json.dumps({"source": "pt", "target": "en"}))
    return root


@pytest.fixture(scope="module")
def spm_model_dir(tmp_path_factory) -> Path:
    """A CALLSTT_CT2_TRANSLATION_DIR of its own with one opus-mt-like model whose tokenizer is source.spm +
    target.spm only (converted with --copy_files source.spm target.spm, as CONVERT_HINT says)."""
    work = tmp_path_factory.mktemp("ct2-translation-spm")
    root = work / "models"
    with warnings.catch_warnings():  # MarianTokenizer (ours, then the converter's) recommends sacremoses: not needed
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        convert(write_marian_spm(work / "hf-marian-spm"), root / SPM_FOLDER, files=("source.spm", "target.spm"))
    return root


@pytest.fixture(scope="module")
def backend(model_dir):
    backend = CTranslate2Backend(model_dir, intra_threads=1)
    backend.load()
    yield backend
    backend.close()


# --- the tests ----------------------------------------------------------------------------------------

def test_the_conversion_gives_ctranslate2_folders(model_dir):
    for name in ("tiny-nllb", "tiny-m2m", "opus-tiny-en-de", "marian-tiny"):
        files = {path.name for path in (model_dir / name).iterdir()}
        assert {"model.bin", "config.json", "shared_vocabulary.json", "tokenizer.json"} <= files, (name, files)
        assert "model.safetensors" not in files  # the weights are CTranslate2's, not transformers'
    vocabulary = json.loads((model_dir / "tiny-nllb" / "shared_vocabulary.json").read_text())
    assert set(NLLB_TOKENS) <= set(vocabulary)


def test_the_backend_finds_every_pair_and_prefers_bilingual_models(backend):
    pairs = backend.pairs()
    nllb = {(s, t) for s in ("en", "pt", "vi", "de") for t in ("en", "pt", "vi", "de") if s != t}
    m2m = {(s, t) for s in ("en", "ja", "ko") for t in ("en", "ja", "ko") if s != t}
    assert pairs == nllb | m2m
    assert {("en", "pt"), ("pt", "en"), ("vi", "en"), ("en", "de"), ("ja", "ko")} <= pairs
    assert ("en", "fr") not in pairs and ("vi", "ja") not in pairs  # no model has both tokens
    by_name = {model.name: model for model in backend.models}
    assert [by_name[name].style for name in ("tiny-nllb", "tiny-m2m", "opus-tiny-en-de", "marian-tiny")] == \
        ["nllb", "m2m", "plain", "plain"]
    assert backend.model == "ctranslate2 marian-tiny, opus-tiny-en-de, tiny-m2m, tiny-nllb"
    # en->de and pt->en: the bilingual models win over the multilingual one covering the same pair.
    assert backend.model_for("en", "de") == "ctranslate2 opus-tiny-en-de"
    assert backend.model_for("pt", "en") == "ctranslate2 marian-tiny"
    assert backend.model_for("de", "en") == "ctranslate2 tiny-nllb"
    assert backend.model_for("en", "ja") == "ctranslate2 tiny-m2m"


@pytest.mark.parametrize("source, target", [("en", "pt"), ("vi", "en"), ("en", "ko"), ("en", "de"), ("pt", "en")])
def test_one_deterministic_string_per_text(backend, source, target):
    texts = ["Hello, how are you today?", "", "Thank you very much for calling."]
    first = backend.translate(texts, source, target)
    assert len(first) == 3 and all(isinstance(text, str) for text in first)
    assert first[1] == ""  # empty text stays empty, without a model call
    assert all(token not in text for text in first for token in NLLB_TOKENS + M2M_TOKENS)  # the prefix is stripped
    assert backend.translate(texts, source, target) == first
    assert backend.translate([texts[2]], source, target) == [first[2]]  # batching changes nothing


def test_the_router_gives_ok_unsupported_and_passthrough(model_dir):
    router = TranslationRouter([CTranslate2Backend(model_dir, intra_threads=1)])
    result = router.translate("Hello there. Thank you very much.", "en-US", "pt-BR")
    assert (result.status, result.backend, result.model) == ("ok", "ctranslate2", "ctranslate2 tiny-nllb en-pt")
    assert [source for source, _ in result.sentences] == ["Hello there.", "Thank you very much."]
    assert result.text == " ".join(target for _, target in result.sentences)
    assert router.translate("Guten Tag.", "de", "en").model == "ctranslate2 tiny-nllb de-en"
    assert router.translate("Hello.", "en", "de").model == "ctranslate2 opus-tiny-en-de en-de"
    missing = router.translate("Bonjour.", "fr", "en")
    assert (missing.status, missing.text, missing.backend) == ("unsupported_pair", "", "none")
    same = router.translate("Olá.", "pt", "pt-BR")
    assert (same.status, same.text, same.backend) == ("passthrough", "Olá.", "passthrough")
    assert "vi->en" in router.describe()["backends"]["ctranslate2"]["pairs"]
    router.close()


def test_configured_after_bergamot_it_adds_pairs_and_bergamot_keeps_en_pt(model_dir, monkeypatch):
    monkeypatch.setenv(CT2_DIR_ENV, str(model_dir))
    settings = Settings.from_env()
    assert settings.ct2_translation_dir == str(model_dir)  # `callstt settings` shows it
    router = load_translation_router("bergamot,ctranslate2", ct2_dir=settings.ct2_translation_dir)
    try:
        assert [backend.name for backend in router.backends] == ["bergamot", "ctranslate2"]
        portuguese = router.translate("Thank you very much.", "en", "pt")
        assert portuguese.backend == "bergamot" and "obrigado" in portuguese.text.lower()
        vietnamese = router.translate("Xin chào.", "vi", "en")
        assert (vietnamese.status, vietnamese.backend) == ("ok", "ctranslate2")
        assert {"en->pt", "vi->en", "en->ko"} <= set(router.describe()["pairs"])
    finally:
        router.close()
    explicit = load_translation_router("ctranslate2", load=False, ct2_dir=str(model_dir))
    assert explicit.backend_for("en", "de").model_for("en", "de") == "ctranslate2 opus-tiny-en-de"


def copy_model(source: Path, destination: Path, skip: tuple[str, ...] = ()) -> Path:
    destination.mkdir(parents=True)
    for file in source.iterdir():
        if file.name not in skip:
            shutil.copy(file, destination / file.name)
    return destination


def test_broken_or_missing_models_are_clear_errors(model_dir, tmp_path, monkeypatch):
    copy_model(model_dir / "tiny-nllb", tmp_path / "broken" / "half-copied", skip=("model.bin",))
    with pytest.raises(TranslationModelError, match="half-copied: no model.bin.*ct2-transformers-converter"):
        CTranslate2Backend(tmp_path / "broken")
    copy_model(model_dir / "tiny-nllb", tmp_path / "bare" / "nllb", skip=("tokenizer.json",))
    with pytest.raises(TranslationModelError, match="nllb: no tokenizer: copy tokenizer.json"):
        CTranslate2Backend(tmp_path / "bare")
    copy_model(model_dir / "opus-tiny-en-de", tmp_path / "unnamed" / "some-marian")
    with pytest.raises(TranslationModelError, match="some-marian: unknown pair.*callstt-pair.json"):
        CTranslate2Backend(tmp_path / "unnamed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no model folders.*ct2-transformers-converter"):
        CTranslate2Backend(tmp_path / "empty")
    monkeypatch.delenv(CT2_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match=f"{CT2_DIR_ENV} is not set.*--copy_files tokenizer.json"):
        load_translation_router("bergamot,ctranslate2", load=False, ct2_dir=Settings.from_env().ct2_translation_dir)


def test_sentencepiece_models_name_the_missing_package(model_dir, tmp_path, monkeypatch):
    # opus-mt ships source.spm/target.spm, no tokenizer.json: without sentencepiece it cannot run.
    folder = copy_model(model_dir / "opus-tiny-en-de", tmp_path / "spm" / "opus-mt-en-de", skip=("tokenizer.json",))
    (folder / "source.spm").write_bytes(b"")
    (folder / "target.spm").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # as if it were not installed
    with pytest.raises(TranslationModelError, match="opus-mt-en-de: .*sentencepiece package is not installed.*"
                                                    r"callstt\[translation\]"):
        CTranslate2Backend(tmp_path / "spm")


def test_an_opus_mt_model_with_only_sentencepiece_files_translates(spm_model_dir):
    folder = spm_model_dir / SPM_FOLDER
    files = {path.name for path in folder.iterdir()}
    assert {"model.bin", "shared_vocabulary.json", "source.spm", "target.spm"} <= files, files
    assert "tokenizer.json" not in files
    backend = CTranslate2Backend(spm_model_dir, intra_threads=1)
    try:
        [model] = backend.models
        assert (model.style, model.tokenizer, model.bilingual) == ("plain", ("source.spm", "target.spm"), True)
        assert backend.pairs() == {("en", "de")}
        assert backend.model == backend.model_for("en", "de") == f"ctranslate2 {SPM_FOLDER}"
        # The source model's pieces are the converted model's tokens: none of them becomes <unk>.
        vocabulary = set(json.loads((folder / "shared_vocabulary.json").read_text()))
        pieces = load_tokenizer(model).tokens("Hello there.")
        assert pieces and set(pieces) <= vocabulary, pieces
        backend.load()
        first = backend.translate(["Hello there.", ""], "en", "de")
        assert len(first) == 2 and all(isinstance(text, str) for text in first)
        assert first[1] == ""  # empty text stays empty
        assert backend.translate(["Hello there.", ""], "en", "de") == first
        result = TranslationRouter([backend]).translate("Hello there.", "en", "de")
        assert (result.status, result.model, result.text) == ("ok", f"ctranslate2 {SPM_FOLDER} en-de", first[0])
    finally:
        backend.close()
