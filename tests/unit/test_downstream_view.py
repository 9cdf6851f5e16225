"""The live page's view of the chain (streams/worker/downstream_view.py, WorkerStatus): speech kept
per utterance and bounded, served as WAV; translations and speech land beside their transcript."""

from __future__ import annotations

import io
import wave

import numpy as np

from callstt.schemas.records import AudioChunk, Transcript, Translation, TranslationStatus, transcript_id
from callstt.streams.settings import Settings
from callstt.streams.worker.downstream_view import SpeechClips
from callstt.streams.worker.web import WorkerStatus


def chunk(seq: int, samples: int = 1600, leg: str = "caller>pt", value: int = 1000) -> AudioChunk:
    return AudioChunk(call_id="call", stream_id=leg, seq=seq, capture_ts_ms=0, sample_rate=16000,
                      encoding="PCM_S16LE", payload=np.full(samples, value, dtype="<i2").tobytes())


def test_a_clip_is_its_chunks_in_sequence_order_as_wav_and_a_repeat_replaces_its_copy():
    clips = SpeechClips()
    for seq in (200_001, 200_000, 200_001):  # out of order, and a repeat after a speaker's restart
        key = clips.add(chunk(seq, value=seq % 100_000 + 1))
    assert key == ("call", "caller>pt", 2) and clips.seconds(key) == 0.2
    with wave.open(io.BytesIO(clips.wav(key))) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes()) == (16000, 1, 2, 3200)
        samples = np.frombuffer(wav.readframes(3200), dtype="<i2")
    assert samples[0] == 1 and samples[-1] == 2  # seq 200000 first
    assert clips.wav(("call", "caller>pt", 3)) is None


def test_clips_are_bounded_in_number_and_length_and_only_translated_legs_are_kept():
    clips = SpeechClips(max_utterances=2, max_seconds=0.25)
    for index in range(3):
        for n in range(4):
            clips.add(chunk(index * 100_000 + n))
    assert list(clips.clips) == [("call", "caller>pt", 1), ("call", "caller>pt", 2)]
    assert clips.seconds(("call", "caller>pt", 2)) == 0.2  # the third 100 ms chunk would pass 0.25 s
    assert clips.add(chunk(0, leg="caller")) is None  # the platform's own audio is not ours to play


def transcript(index: int) -> Transcript:
    return Transcript(transcript_id=transcript_id("call", "caller", index), call_id="call", stream_id="caller",
                      utterance_index=index, is_final=True, text=f"hello {index}", language="en",
                      language_probability=0.9, start_ms=0, end_ms=1000, model_name="base", backend="faster-whisper",
                      avg_logprob=-0.2, no_speech_prob=0.0, last_audio_capture_ts_ms=0, last_audio_received_ts_ms=0,
                      produced_ts_ms=0)


def translation(index: int, target: str, status=TranslationStatus.OK, text: str = "olá") -> Translation:
    return Translation(translation_id=f"{index}:{target}", transcript_id=transcript_id("call", "caller", index),
                       call_id="call", stream_id="caller", utterance_index=index, source_language="en",
                       target_language=target, status=status, text=text, backend="bergamot",
                       transcript_produced_ts_ms=0, produced_ts_ms=0)


def test_translations_and_speech_land_beside_their_transcript_while_it_is_recent():
    status = WorkerStatus(Settings.from_env({}))
    status.recent_transcripts = type(status.recent_transcripts)(maxlen=2)
    for index in range(3):
        status.on_transcript(transcript(index))
    assert sorted(status.recent_by_utterance) == [("call", "caller", 1), ("call", "caller", 2)]
    status.on_translation(translation(2, "pt"))
    status.on_translation(translation(2, "vi", TranslationStatus.UNSUPPORTED_PAIR, ""))
    status.on_translation(translation(0, "pt"))  # no longer shown: ignored
    status.on_speech(("call", "caller>pt", 2), 1.5)
    entry = status.calls()["recent_transcripts"][-1]
    assert entry["translations"] == {"pt": {"text": "olá", "status": "ok"},
                                     "vi": {"text": "", "status": "unsupported_pair"}}
    assert entry["speech"] == {"pt": {"seconds": 1.5,
                                      "url": "/calls/speech?call=call&leg=caller%3Ept&utterance=2"}}
