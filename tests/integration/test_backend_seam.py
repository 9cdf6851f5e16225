"""A new speech-recognition backend, added the documented way (streams/model_routes.py): a class with
models/asr/routing.py's interface, a loader, and a CALLSTT_ROUTES row naming the loader. Nothing else
in the project changes, and a call in the routed language goes through it: the worker's own core
(cut, language, model, guard, transcript) with a real tiny Whisper checkpoint.

The backend here is deliberately unlike the shipped ones: transformers' plain `generate`, greedy,
one utterance per call, no word times."""

from __future__ import annotations

import numpy as np
import pytest

from callstt.models.asr.routing import Capabilities
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.results import Segment, TranscriptionResult, Word
from callstt.models.text.vocabulary import NO_VOCABULARY
from callstt.models.voices.synth import VIETNAMESE_SENTENCES, synthesize
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from callstt.streams.core.pipeline import MemoryStore
from callstt.streams.core_from_settings import build_pipeline
from callstt.streams.model_routes import build_router
from callstt.streams.settings import Settings, SettingsError
from tests.integration.test_vietnamese_route import PHRASE, SKIP_VIETNAMESE, write_tiny_checkpoint

LOADER = "tests.integration.test_backend_seam:load_generate_backend"


class GenerateBackend:
    """A Whisper checkpoint through transformers' `generate`, as simply as it runs."""

    backend_name = "plain-generate"
    capabilities = Capabilities(word_times=False)  # one utterance per call: batching runs it alone

    def __init__(self, checkpoint, model_name: str) -> None:
        from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

        self.model_name = model_name
        self.model = WhisperForConditionalGeneration.from_pretrained(checkpoint).eval()
        self.features = WhisperFeatureExtractor.from_pretrained(checkpoint)
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   vocabulary=NO_VOCABULARY) -> TranscriptionResult:
        import torch

        inputs = self.features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = self.model.generate(inputs, language=language, task="transcribe", max_new_tokens=20)
        text = self.tokenizer.decode(ids[0], skip_special_tokens=True).strip()
        seconds = len(audio) / SAMPLE_RATE
        return TranscriptionResult(text=text, language=language or "vi", language_probability=1.0,
                                   segments=[Segment(text=text, start=0.0, end=seconds, avg_logprob=-0.1,
                                                     no_speech_prob=0.0)] if text else [],
                                   words=[Word(text, 0.0, seconds, 1.0)] if text else [],
                                   model_name=self.model_name, backend=self.backend_name)

    def language_ranking(self, audio, allowed=()) -> list[tuple[str, float]]:
        return [("vi", 1.0)]


def load_generate_backend(route, settings, options) -> GenerateBackend:
    """The loader CALLSTT_ROUTES names: the route says which checkpoint."""
    return GenerateBackend(route.reference, model_name="tiny-plain")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    if SKIP_VIETNAMESE:
        pytest.skip("CALLSTT_NO_VIETNAMESE=1: the Vietnamese extra (transformers) was not installed")
    return write_tiny_checkpoint(tmp_path_factory.mktemp("plain") / "tiny-vi", speak=PHRASE)


def test_a_new_backend_registered_by_a_route_setting_transcribes_a_call(checkpoint):
    settings = Settings(routes=f"vi={LOADER}@{checkpoint}", cpu_threads=2, speculate_ms=0, partial_interval_ms=0)
    router = build_router(settings)
    assert router.notes == {} and router.routes["vi"].backend_name == "plain-generate"
    assert router.describe()["routes"]["vi"]["model"] == "tiny-plain"
    assert router.backend_for("en") is router.multilingual  # the other languages: unchanged

    # A Vietnamese call through the worker's core, in its default (packed) mode.
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), synthesize(VIETNAMESE_SENTENCES[1], "vi"),
                            np.zeros(SAMPLE_RATE, np.float32)])
    chunks = iter_chunks(audio, "seam-1", "caller", ChunkPlan(), start_ms=0, language="vi")
    batch = build_pipeline(settings).batch(MemoryStore().get)
    for chunk in chunks:
        batch.accept_chunk(chunk, 0, None)
    [result] = batch.transcribe(router)
    transcript = result.transcript
    assert transcript is not None, result.dropped
    assert (transcript.text, transcript.language, transcript.model_name) == ("xin chào", "vi", "tiny-plain")
    assert transcript.backend == "plain-generate"


def test_a_route_that_names_no_loader_or_a_broken_one_is_clear():
    with pytest.raises(SettingsError, match="CALLSTT_ROUTES: 'vi' is not LANG=BACKEND@MODEL"):
        build_router(Settings(routes="vi"))
    router = build_router(Settings(routes="vi=tests.integration.test_backend_seam:no_such_loader@/nowhere",
                                   cpu_threads=2))
    assert router.routes == {} and "no_such_loader" in router.notes["vi"]
    assert router.backend_for("vi") is router.multilingual  # falls back, as a PhoWhisper route that cannot load
