"""The chain bench's arithmetic (streams/bench/chain.py): the four delays per utterance joined by
transcript id and by the translated leg's chunk numbers; missing translations and speech counted."""

from __future__ import annotations

from callstt.schemas.records import AudioChunk, Transcript, Translation, TranslationStatus, transcript_id
from callstt.streams.bench.chain import chain_figures, markdown_lines
from callstt.streams.bench.collecting import Arrival

EOS_MS = 1_000_000


def final(index: int, stream_id: str = "caller") -> Transcript:
    return Transcript(transcript_id=transcript_id("call", stream_id, index), call_id="call", stream_id=stream_id,
                      utterance_index=index, is_final=True, text="Hello there.", language="en",
                      language_probability=0.9, start_ms=0, end_ms=1000, model_name="base", backend="faster-whisper",
                      avg_logprob=-0.2, no_speech_prob=0.0, last_audio_capture_ts_ms=EOS_MS + index * 10_000,
                      last_audio_received_ts_ms=0, produced_ts_ms=0)


def translation(t: Transcript, status=TranslationStatus.OK, text: str = "Olá.") -> Translation:
    return Translation(translation_id=f"{t.transcript_id}:pt", transcript_id=t.transcript_id, call_id=t.call_id,
                       stream_id=t.stream_id, utterance_index=t.utterance_index, source_language="en",
                       target_language="pt", status=status, text=text, backend="bergamot",
                       transcript_produced_ts_ms=0, produced_ts_ms=0)


def chunk(t: Transcript, n: int) -> AudioChunk:
    return AudioChunk(call_id=t.call_id, stream_id=f"{t.stream_id}>pt", seq=t.utterance_index * 100_000 + n,
                      capture_ts_ms=0, sample_rate=16000, encoding="PCM_S16LE", payload=b"\0\0")


def test_each_utterance_gives_its_four_delays_from_the_first_arrivals():
    t0, t1 = final(0), final(1)
    base0, base1 = t0.last_audio_capture_ts_ms, t1.last_audio_capture_ts_ms
    finals = [Arrival(t0, base0 + 800), Arrival(t1, base1 + 900), Arrival(t0, base0 + 5000)]  # t0 again later
    translations = [Arrival(translation(t0), base0 + 900), Arrival(translation(t1), base1 + 1000)]
    speech = [Arrival(chunk(t0, 1), base0 + 1300), Arrival(chunk(t0, 0), base0 + 1200),
              Arrival(chunk(t1, 0), base1 + 1700)]
    figures = chain_figures(finals, translations, speech)
    assert figures["transcripts"] == 2 and figures["spoken"] == 2 and figures["translations"] == {"ok": 2}
    assert figures["missing_translation"] == 0 and figures["missing_speech"] == 0
    assert figures["end_of_speech_to_transcript_s"]["max"] == 0.9  # t0's first arrival, not its repeat
    assert figures["transcript_to_translation_s"]["max"] == 0.1
    assert figures["translation_to_first_audio_s"]["mean"] == 0.5  # t0's first chunk is seq 0: 0.3; t1: 0.7
    assert figures["end_to_end_s"]["max"] == 1.7 and figures["within_target_share"] == 0.5
    assert figures["speech_seconds"] == 0.3


def test_missing_stages_and_unsupported_pairs_are_counted_not_timed():
    spoken, silent, unsupported, lost = final(0), final(1), final(2), final(3)
    finals = [Arrival(t, t.last_audio_capture_ts_ms + 500) for t in (spoken, silent, unsupported, lost)]
    translations = [Arrival(translation(spoken), EOS_MS + 600),
                    Arrival(translation(silent), silent.last_audio_capture_ts_ms + 600),
                    Arrival(translation(unsupported, TranslationStatus.UNSUPPORTED_PAIR, ""),
                            unsupported.last_audio_capture_ts_ms + 600)]
    figures = chain_figures(finals, translations, [])
    assert figures["translations"] == {"ok": 2, "unsupported_pair": 1}
    assert figures["missing_translation"] == 1  # `lost`
    assert figures["missing_speech"] == 2  # `spoken` and `silent` had text; `unsupported` has none to say
    assert figures["spoken"] == 0 and figures["within_target_share"] is None
    lines = markdown_lines({"target_language": "pt", "target_s": 1.5, "live": [{"calls": 1, **figures}]})
    assert any(line.startswith("| 1 | 4 (0) |") and "1 translations, 2 speech" in line for line in lines)
