"""The gateway's pure parts (streams/gateway/protocol.py, session.py) and its client tokens
(streams/web_auth.py): what a Deepgram client's query asks for, what it gets back, how frames
become chunks, where a resumed stream goes on from."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from callstt.schemas.records import AudioChunk, Encoding, Transcript, TranscriptWord
from callstt.streams.gateway.protocol import BadRequest, parse_listen, results
from callstt.streams.gateway.session import FrameCutter, Pacer, StreamLeg, StreamMark, caught_up_mark, loud_end
from callstt.streams.lifecycle import StartError
from callstt.streams.web_auth import WebAccess, read_token_lines


def query(text: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for pair in text.split("&"):
        name, _, value = pair.partition("=")
        parsed.setdefault(name, []).append(value)
    return parsed


def test_a_deepgram_query_becomes_the_calls_settings():
    request = parse_listen(query("model=nova-3&encoding=mulaw&sample_rate=8000&language=en-US&language=vi"
                                 "&keyterm=Acme&keywords=Zalo:2&redact=pci&redact=ssn&interim_results=true"
                                 "&call_id=c1&translate_to=pt&smart_format=true"), new_call_id="new")
    assert request.encoding is Encoding.MULAW and request.sample_rate == 8000 and request.stream_ids == ("caller",)
    assert request.languages == ("en", "vi") and request.hotwords == ("Acme", "Zalo")
    assert request.redact == ("card", "id") and request.interim_results and request.call_id == "c1"
    assert request.ignored == ("model", "smart_format")
    settings = request.call_settings(now_ms=1)
    assert settings.languages == ("en", "vi") and settings.streams[0].stream_id == "caller"
    assert settings.translate_to == ("pt",) and settings.redact == ("card", "id")
    detected = parse_listen(query("encoding=linear16&sample_rate=16000&language=multi"), new_call_id="n")
    assert detected.languages == () and detected.call_id == "n"
    assert parse_listen(query("encoding=linear16&sample_rate=16000"), "n").call_settings(1) is None


@pytest.mark.parametrize("text, named", [
    ("sample_rate=16000", "encoding is required"),
    ("encoding=opus&sample_rate=48000", "opus"),
    ("encoding=linear16", "sample_rate is required"),
    ("encoding=linear16&sample_rate=4000", "out of range"),
    ("encoding=linear16&sample_rate=16000&channels=2&multichannel=true&stream_id=a", "one per channel"),
    ("encoding=linear16&sample_rate=16000&redact=dna", "redact"),
    ("encoding=linear16&sample_rate=16000&interim_results=maybe", "true or false"),
    ("encoding=linear16&sample_rate=16000&call_id=a/b", "call_id"),
    ("encoding=linear16&sample_rate=16000&lenguage=en", "lenguage"),
])
def test_what_cannot_be_served_is_refused_naming_the_parameter(text, named):
    with pytest.raises(BadRequest, match=named):
        parse_listen(query(text), new_call_id="n")


def transcript(is_final: bool = True, index: int = 0, revision: int = 0) -> Transcript:
    return Transcript(transcript_id=f"t{index}", call_id="c1", stream_id="caller", utterance_index=index,
                      is_final=is_final, text=" Hello, world.", language="en", language_probability=1.0,
                      start_ms=1200, end_ms=2400, words=[TranscriptWord(text=" Hello,", start_ms=1250, end_ms=1600,
                                                                       probability=0.9),
                                                        TranscriptWord(text=" world.", start_ms=1700, end_ms=2300,
                                                                       probability=0.7)],
                      model_name="whisper-base", backend="ct2", avg_logprob=-0.2, no_speech_prob=0.01,
                      last_audio_capture_ts_ms=0, last_audio_received_ts_ms=0, produced_ts_ms=0, revision=revision)


def test_a_transcript_is_a_deepgram_results_message():
    message = results(transcript(), channel=1, channels=2, request_id="r")
    assert message["type"] == "Results" and message["channel_index"] == [1, 2]
    assert (message["start"], message["duration"]) == (1.2, 1.2)
    assert message["is_final"] and message["speech_final"]
    alternative = message["channel"]["alternatives"][0]
    assert alternative["transcript"] == "Hello, world." and alternative["confidence"] == pytest.approx(0.8)
    assert alternative["words"][0] == {"word": "hello", "start": 1.25, "end": 1.6, "confidence": 0.9,
                                       "punctuated_word": "Hello,"}
    assert message["callstt"]["utterance_index"] == 0
    interim = results(transcript(is_final=False, revision=2), 0, 1, "r")
    assert not interim["is_final"] and not interim["speech_final"]


def test_frames_become_whole_sample_chunks_per_channel():
    request = parse_listen(query("encoding=linear16&sample_rate=8000&channels=2&multichannel=true"
                                 "&stream_id=agent,customer"), "n")
    cutter = FrameCutter(request)
    left, right = np.arange(10, dtype="<i2"), -np.arange(10, dtype="<i2")
    interleaved = np.stack([left, right], axis=1).reshape(-1).tobytes()
    first = cutter.cut(interleaved[:7])  # one whole frame (4 bytes), 3 bytes wait for the next
    assert first == [[left[:1].tobytes()], [right[:1].tobytes()]]
    rest = cutter.cut(interleaved[7:])
    assert rest == [[left[1:].tobytes()], [right[1:].tobytes()]] and cutter.leftover == b""
    mono = FrameCutter(parse_listen(query("encoding=mulaw&sample_rate=8000"), "n"))
    pieces = mono.cut(bytes(8000))  # one second: two chunks of at most 500 ms
    assert [len(piece) for piece in pieces[0]] == [4000, 4000]


def test_a_resumed_stream_goes_on_after_the_chunks_acknowledged_since_its_mark():
    mark = StreamMark(call_id="c1", stream_id="caller", next_seq=10, samples=1600, sample_rate=8000, audio_offset=5)
    later = [AudioChunk(call_id="c1", stream_id="caller", seq=seq, capture_ts_ms=0, sample_rate=8000,
                        encoding=Encoding.MULAW, payload=bytes(160)) for seq in (9, 11, 10)]
    caught_up = caught_up_mark(mark, later)
    assert (caught_up.next_seq, caught_up.samples, caught_up.audio_ms) == (12, 1920, 240)
    assert StreamMark.from_bytes(caught_up.to_bytes()) == caught_up
    request = parse_listen(query("encoding=mulaw&sample_rate=8000&interim_results=true"), "c1")
    leg = StreamLeg(request, 0, replace_delivered(caught_up, 3))
    assert leg.chunk(bytes(160), now_ms=10_000).seq == 12 and leg.next_seq == 13
    assert not leg.wants_final(transcript(index=3)) and leg.wants_final(transcript(index=4))
    assert leg.wants_interim(transcript(False, 4, 1))
    leg.sent_interim(transcript(False, 4, 2))
    assert not leg.wants_interim(transcript(False, 4, 1)) and not leg.wants_interim(transcript(False, 3, 9))


def replace_delivered(mark: StreamMark, index: int) -> StreamMark:
    from dataclasses import replace

    return replace(mark, delivered_through=index)


def test_a_client_faster_than_real_time_waits():
    pacer = Pacer(max_ahead_s=2.0, started=100.0)
    pacer.add(5.0)
    assert pacer.wait_s(now=101.0) == pytest.approx(2.0) and pacer.wait_s(now=104.0) == 0.0


def test_client_tokens_use_only_their_calls_and_open_no_page(tmp_path: Path):
    admin, client = "a" * 32, "c" * 32
    path = tmp_path / "tokens"
    path.write_text(f"# rotate monthly\n{admin}\n{client} calls=shop-*,support-1\n")
    tokens, scopes = read_token_lines(path)
    access = WebAccess(tokens, str(path), call_scopes=scopes)
    assert access.client_token(client) == client and access.client_token("x" * 32) is None
    assert access.may_use_call(client, "shop-42") and access.may_use_call(client, "support-1")
    assert not access.may_use_call(client, "bank-1") and access.may_use_call(admin, "bank-1")
    headers = {"Authorization": f"Bearer {client}"}
    assert not access.allows("/calls/live", headers, {}, time.time())  # a page with every call
    cookie = access.session_for(client, time.time())
    assert access.session_token(cookie, time.time()) == client and not access.session_valid(cookie, time.time())
    path.write_text(f"{client} region=eu\n")
    with pytest.raises(StartError, match="calls="):
        read_token_lines(path)


def test_after_close_a_stream_awaits_the_final_of_its_loud_audio_only():
    request = parse_listen(query("encoding=linear16&sample_rate=16000"), "c1")
    leg = StreamLeg(request, 0, StreamMark(call_id="c1", stream_id="caller"))
    quiet, tone = np.zeros(16000, dtype="<i2"), (np.sin(np.arange(8000) / 5) * 8000).astype("<i2")
    assert loud_end(quiet.astype(np.float32) / 32768, 16000) is None
    leg.chunk(quiet.tobytes(), now_ms=0)
    assert not leg.awaits_a_final()  # a second of silence: nothing to wait for
    leg.chunk(tone.tobytes(), now_ms=0)  # half a second of tone, from 1.0 to 1.5 s
    assert leg.loud_until_ms == 1500 and leg.awaits_a_final()
    leg.received(transcript(index=0))  # a final ending at 2.4 s covers it
    assert not leg.awaits_a_final()
    leg.received(transcript(is_final=False, index=1))  # an interim of the next utterance: its final is owed
    assert leg.awaits_a_final()


def test_after_close_a_stream_awaits_the_translations_and_speech_it_asked_for():
    from callstt.schemas.records import Translation, TranslationStatus

    request = parse_listen(query("encoding=linear16&sample_rate=16000&translate_to=pt,es&speech=true"), "c1")
    leg = StreamLeg(request, 0, StreamMark(call_id="c1", stream_id="caller"))
    leg.received(transcript(index=0))
    assert leg.awaits_downstream(now=0.0)  # no translation yet

    def translation(target: str, status: TranslationStatus, text: str) -> Translation:
        return Translation(translation_id=target, transcript_id="t0", call_id="c1", stream_id="caller",
                           utterance_index=0, source_language="en", target_language=target, status=status, text=text,
                           backend="b", transcript_produced_ts_ms=0, produced_ts_ms=0)

    leg.received_translation(translation("pt", TranslationStatus.OK, "Olá, mundo."))
    assert leg.awaits_downstream(now=0.0)  # es still missing
    leg.received_translation(translation("es", TranslationStatus.UNSUPPORTED_PAIR, ""))
    assert leg.awaits_downstream(now=0.0)  # pt's speech not come yet; es has none to wait for
    leg.received_speech(0, now=10.0)
    assert leg.awaits_downstream(now=10.5) and not leg.awaits_downstream(now=11.5)  # quiet for a second: done
