"""The translation agent against the real broker with the packaged English<->Portuguese models: a
`callstt translator` subprocess reading Transcript records (as the transcriber publishes them)
and call settings, publishing Translation events."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from callstt.models.voices.synth import synthesize
from callstt.schemas.codec import AvroCodec, DecodeError
from callstt.schemas.records import (CallSettings, StreamSettings, Transcript, Translation, TranslationStatus,
                                     transcript_id, translation_id)
from callstt.streams.client.topics import ensure_topics
from tests.pipeline import WorkerProcess, by_call

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def translator(kafka_bootstrap, tmp_path_factory):
    process = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("translator"), command="translator",
                            extra_env={"CALLSTT_TRANSLATE_TO": "pt"})  # the default for calls without settings
    ensure_topics(process.settings())
    process.start()
    yield process
    process.stop()


def final(call_id: str, text: str, language: str, index: int = 0, stream_id: str = "caller",
          is_final: bool = True, revision: int = 0, stable_text: str = "") -> Transcript:
    return Transcript(transcript_id=transcript_id(call_id, stream_id, index), call_id=call_id, stream_id=stream_id,
                      utterance_index=index, is_final=is_final, revision=revision, stable_text=stable_text,
                      stable_word_count=len(stable_text.split()), text=text, language=language, language_probability=0.9,
                      start_ms=0, end_ms=2000, model_name="base", backend="faster-whisper", avg_logprob=-0.2,
                      no_speech_prob=0.01, last_audio_capture_ts_ms=int(time.time() * 1000),
                      last_audio_received_ts_ms=int(time.time() * 1000), produced_ts_ms=int(time.time() * 1000))


def produce(translator, topic: str, records: list[tuple[str, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": translator.bootstrap})
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def set_call_settings(agent, settings: CallSettings,
                      counter: str = 'callstt_translator_records_total{kind="settings_set"}') -> None:
    """Publish a call's settings and wait until the agent has kept them (its `counter` moved)."""
    before = agent.metrics().get(counter, 0.0)
    produce(agent, agent.call_settings_topic,
            [(settings.call_id, AvroCodec().encode_call_settings(settings, agent.call_settings_topic))])
    deadline = time.monotonic() + 60
    while agent.metrics().get(counter, 0.0) <= before:
        assert time.monotonic() < deadline, "the agent did not keep the call settings"
        time.sleep(0.2)


def decoded(codec: AvroCodec, value: bytes) -> Translation | None:
    """A translation record, or None for one that is not one: other tests of the module put bad
    records on these topics on purpose (the speaker's dead-letter test); they belong to no call."""
    try:
        return codec.decode_translation(value)
    except DecodeError:
        return None


def translations(translator, call_ids: set[str], expected: int, timeout: float = 90.0, topic: str | None = None) -> list:
    """The translations of these calls (on `topic`, default the final translation topic) once
    `expected` distinct records arrived (by id and revision), and whatever follows within 2 s."""
    consumer = Consumer({"bootstrap.servers": translator.bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic or translator.translation_topic])
    codec, found = AvroCodec(), []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len({(t.translation_id, t.revision) for t in found}) < expected:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            translation = decoded(codec, message.value())
            if translation is not None and translation.call_id in call_ids:
                found.append(translation)
        time.sleep(2)  # anything extra arrives too
        for message in consumer.consume(100, timeout=2):
            if not message.error() and (t := decoded(codec, message.value())) is not None and t.call_id in call_ids:
                found.append(t)
    finally:
        consumer.close()
    return found


def test_finals_are_translated_per_call_settings_unsupported_pairs_are_said_and_bad_records_dead_lettered(translator):
    run = uuid.uuid4().hex[:6]
    english, vietnamese, portuguese, default = (f"{kind}-{run}" for kind in ("en", "vi", "pt", "default"))
    set_call_settings(translator, CallSettings(call_id=english, translate_to=(),  # the caller's leg: nothing
                                               streams=(StreamSettings(stream_id="agent", translate_to=("pt",)),)))
    set_call_settings(translator, CallSettings(call_id=vietnamese, translate_to=("en",)))
    set_call_settings(translator, CallSettings(call_id=portuguese, translate_to=("pt", "en")))
    codec, topic = AvroCodec(), translator.transcript_topic
    records = [
        final(english, "Thank you for calling customer support. How can I help you today?", "en", stream_id="agent"),
        final(english, "I would like to book a table.", "en", stream_id="caller"),  # its stream: no target
        final(english, "Thank you for", "en", index=1, stream_id="agent", is_final=False),  # interims: not translated
        final(vietnamese, "Xin chào, tôi muốn đặt một bàn.", "vi"),
        final(portuguese, "Obrigado por ligar.", "pt"),
        final(default, "Please call me back tomorrow morning.", "en"),  # no settings: the default, pt
    ]
    produce(translator, topic, [(t.call_id, codec.encode_transcript(t, topic)) for t in records]
            + [(default, b"\x00\x00\x00\x00\x06not avro")])  # a bad record: dead-lettered, the agent goes on

    found = translations(translator, {english, vietnamese, portuguese, default}, expected=5)
    by_key = {(t.call_id, t.stream_id, t.target_language): t for t in found}
    assert len({t.translation_id for t in found}) == 5, [(t.call_id, t.target_language, t.text) for t in found]

    agent = by_key[(english, "agent", "pt")]
    assert agent.status is TranslationStatus.OK and agent.source_language == "en"
    assert agent.transcript_id == records[0].transcript_id and len(agent.sentences) == 2
    assert any(word in agent.text.lower() for word in ("obrigad", "ajud", "hoje")), agent.text
    assert (english, "caller", "pt") not in by_key
    unsupported = by_key[(vietnamese, "caller", "en")]
    assert unsupported.status is TranslationStatus.UNSUPPORTED_PAIR and unsupported.text == ""
    assert by_key[(portuguese, "caller", "pt")].status is TranslationStatus.PASSTHROUGH
    assert by_key[(portuguese, "caller", "pt")].text == "Obrigado por ligar."
    to_english = by_key[(portuguese, "caller", "en")]
    assert to_english.status is TranslationStatus.OK and "thank" in to_english.text.lower(), to_english.text
    assert by_key[(default, "caller", "pt")].status is TranslationStatus.OK
    print({key: t.text for key, t in by_key.items()})

    assert dead_letter_sources(translator, default) == [topic]


def dead_letter_sources(process, key: str) -> list[str]:
    """The source topics named by the dead letters with this key."""
    consumer = Consumer({"bootstrap.servers": process.bootstrap, "group.id": f"d-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([process.dead_letter_topic])
    letters = [m for m in consumer.consume(50, timeout=10) if not m.error() and m.key() == key.encode()]
    consumer.close()
    return [dict(m.headers())["source_topic"].decode() for m in letters]


@pytest.fixture(scope="module")
def speaker(translator, tmp_path_factory):
    """The speech agent on the translator's topics (the same name: the same topic names)."""
    process = WorkerProcess(translator.bootstrap, tmp_path_factory.mktemp("speaker"), name=translator.name,
                            command="speaker", extra_env={"CALLSTT_SPEECH_VOICES": "en=piper:joe"}).start()
    yield process
    process.stop()


def speech_chunks(speaker, call_ids: str | set[str], timeout: float = 90.0, idle_s: float = 5.0,
                  expected: set[tuple[str, str, int]] | None = None) -> list:
    """The chunks of these calls on the speech topic, in arrival order: read until `idle_s` passed
    without a new one (after the first; with `expected`, a set of (call, leg, seq), only once all of
    those arrived), or `timeout`."""
    call_ids = {call_ids} if isinstance(call_ids, str) else call_ids
    consumer = Consumer({"bootstrap.servers": speaker.bootstrap, "group.id": f"s-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([speaker.speech_topic])
    codec, chunks, seen = AvroCodec(), [], set()
    deadline, last = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline and (last is None or time.monotonic() - last < idle_s
                                               or (expected is not None and not expected <= seen)):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                chunk = codec.decode_chunk(message.value())
                if chunk.call_id in call_ids:
                    chunks.append(chunk)
                    seen.add((chunk.call_id, chunk.stream_id, chunk.seq))
                    last = time.monotonic()
    finally:
        consumer.close()
    return chunks


def test_an_english_transcript_with_target_pt_comes_back_as_portuguese_speech(translator, speaker, base_model):
    """Transcript -> translation -> synthesized chunks on the speech topic, as a call platform
    would play them; the speech, transcribed again by our model, says the translation.

    The bound is on characters only: espeak-ng's robotic Portuguese voice through the
    multilingual base model gets most sounds but few whole words right ("Obrega do puligapa do
    suporte ao cliente" for "Obrigado por ligar para o suporte ao cliente"), and how many whole
    words survive varies from run to run and machine to machine (WER 0.73 here, 1.0 on a CI
    machine), while the character error rate stays low: 0.21 to 0.26 here, 0.36 on that machine.
    What the check must reject sits far above (measured with the same model, language pt):
    another Portuguese sentence 0.71, half the translation 0.65, the English original in the
    English voice 0.65, noise 0.96, silence 1.0. So CER <= 0.5, between the two; the WER is
    printed, not bounded."""
    import jiwer

    from callstt.streams.bench.evaluation.scoring import normalize, word_error_rate

    call_id = f"speech-{uuid.uuid4().hex[:6]}"
    set_call_settings(translator, CallSettings(call_id=call_id, translate_to=("pt",)))
    transcript = final(call_id, "Thank you for calling customer support. I need to change my delivery address.", "en")
    produce(translator, translator.transcript_topic,
            [(call_id, AvroCodec().encode_transcript(transcript, translator.transcript_topic))])
    (translation,) = [t for t in translations(translator, {call_id}, expected=1) if t.status is TranslationStatus.OK]

    chunks = speech_chunks(speaker, call_id)
    assert chunks and {c.stream_id for c in chunks} == {"caller>pt"} and {c.sample_rate for c in chunks} == {16000}
    assert [c.seq for c in chunks] == sorted({c.seq for c in chunks})  # in order, no duplicates
    assert not any(c.end_of_stream for c in chunks)  # the leg goes on after each utterance
    audio = np.concatenate([np.frombuffer(c.payload, dtype="<i2").astype(np.float32) / 32767 for c in chunks])
    heard = base_model.transcribe(audio, language="pt").text
    wer = word_error_rate([translation.text], [heard], language="pt")
    cer = jiwer.cer(normalize(translation.text, "pt"), normalize(heard, "pt"))
    print(f"translation: {translation.text!r}; heard back: {heard!r}; WER {wer:.2f}, CER {cer:.2f}")
    assert cer <= 0.5, f"the speech does not say the translation: CER {cer:.2f} ({heard!r} for {translation.text!r})"


def test_interims_of_a_call_that_asks_are_translated_by_their_stable_words_as_they_grow(translator):
    """Interim transcripts on the partial topic: the call whose settings ask gets one interim
    translation each time the stable prefix grows (with the interim's revision and its final's
    translation_id) on the partial translation topic, and the final on the final topic; a call
    that does not ask gets its final only."""
    asked, quiet = f"interims-{uuid.uuid4().hex[:6]}", f"finals-{uuid.uuid4().hex[:6]}"
    set_call_settings(translator, CallSettings(call_id=asked, translate_to=("pt",), translate_interims=True))
    words = "Please call me back tomorrow morning."
    steps = [(1, "Please call", ""), (2, "Please call me back", "Please call me"),
             (3, "Please call me back tomorrow", "Please call me"), (4, "Please call me back tomorrow mor",
                                                                     "Please call me back tomorrow")]
    codec, partial = AvroCodec(), translator.partial_topic
    for call_id in (asked, quiet):
        produce(translator, partial, [(call_id, codec.encode_transcript(
            final(call_id, text, "en", is_final=False, revision=revision, stable_text=stable), partial))
            for revision, text, stable in steps])
        produce(translator, translator.transcript_topic,
                [(call_id, codec.encode_transcript(final(call_id, words, "en"), translator.transcript_topic))])
    finals = translations(translator, {asked, quiet}, expected=2)
    interims = translations(translator, {asked, quiet}, expected=2, topic=translator.partial_translation_topic)
    assert {t.call_id for t in finals} == {asked, quiet} and all(t.is_final for t in finals)
    assert [(t.call_id, t.revision, t.is_final) for t in interims] == [(asked, 2, False), (asked, 4, False)]
    final_id = next(t.translation_id for t in finals if t.call_id == asked)
    assert {t.translation_id for t in interims} == {final_id}
    assert "amanhã" not in interims[0].text.lower() and "amanhã" in interims[1].text.lower()


def test_a_translation_into_english_is_spoken_by_the_packaged_piper_voice(translator, speaker, base_model):
    """CALLSTT_SPEECH_VOICES=en=piper:joe (the optional Piper extra and its packaged English voice):
    the speaker says so on /health, and its speech transcribes back to the translation's words; a
    bad record before it is dead-lettered and the speaker goes on; a call whose settings choose
    espeak-ng is spoken by espeak-ng."""
    from callstt.schemas.records import Translation, translation_id
    from callstt.streams.bench.evaluation.scoring import word_error_rate

    health = httpx.get(f"http://127.0.0.1:{speaker.web_port}/health", timeout=5).json()
    assert health["voices"] == {"en": ["joe"]} and health["engines"]["joe"] == "piper en_US-joe-medium"
    assert health["other_languages"] == "espeak-ng"
    call_id, robotic = f"piper-{uuid.uuid4().hex[:6]}", f"espeak-{uuid.uuid4().hex[:6]}"
    set_call_settings(speaker, CallSettings(call_id=robotic, voice="espeak-ng"),
                      counter='callstt_speaker_records_total{kind="settings_set"}')
    text = "Thank you for calling. I would like to book a table for two people."

    def english(call: str) -> bytes:
        record = Translation(translation_id=translation_id(call, "en"), transcript_id=call, call_id=call,
                             stream_id="agent", utterance_index=0, source_language="pt", target_language="en",
                             status=TranslationStatus.OK, text=text, backend="bergamot",
                             transcript_produced_ts_ms=int(time.time() * 1000), produced_ts_ms=int(time.time() * 1000))
        return AvroCodec().encode_translation(record, translator.translation_topic)

    espeak_before = speaker.metrics().get('callstt_speech_chunks_total{language="en",voice="espeak-ng"}', 0.0)
    produce(translator, translator.translation_topic,
            [(call_id, b"\x00\x00\x00\x00\x09not avro"), (call_id, english(call_id)), (robotic, english(robotic))])
    chunks = speech_chunks(speaker, call_id)
    assert chunks and {c.stream_id for c in chunks} == {"agent>en"}
    audio = np.concatenate([np.frombuffer(c.payload, dtype="<i2").astype(np.float32) / 32767 for c in chunks])
    heard = base_model.transcribe(audio, language="en").text
    print(f"Piper said {text!r}; heard back {heard!r}")
    assert word_error_rate([text], [heard]) <= 0.1
    assert dead_letter_sources(speaker, call_id) == [speaker.translation_topic]
    assert speech_chunks(speaker, robotic)  # and counted under its voice:
    assert speaker.metrics()['callstt_speech_chunks_total{language="en",voice="espeak-ng"}'] > espeak_before
    assert speaker.metrics()['callstt_speech_chunks_total{language="en",voice="joe"}'] >= len(chunks)


def test_a_sigkilled_translator_loses_no_translation_and_repeats_only_with_the_same_ids(kafka_bootstrap, tmp_path):
    """A backlog of transcripts, the translator killed as soon as it has translated one, a
    replacement started: every transcript ends up translated; duplicates carry the same
    translation_id. Then that the kill did land mid-backlog (some translations out, not all, read
    on the topic between the kill and the restart), or the test proved nothing: checked apart,
    after the outcome, whatever this machine's speed."""
    worker = WorkerProcess(kafka_bootstrap, tmp_path, command="translator",
                           extra_env={"CALLSTT_TRANSLATE_TO": "pt", "CALLSTT_KAFKA_SESSION_TIMEOUT_S": "10"})
    ensure_topics(worker.settings())
    codec, topic = AvroCodec(), worker.transcript_topic
    sentences = ["Please call me back tomorrow morning.", "Thank you for calling customer support.",
                 "I need to change my delivery address.", "Have a great day and goodbye."]
    # Hundreds a second on a fast machine: a backlog that outlasts the test's reaction to the first.
    records = [final(f"kill-{n % 6}", sentences[n % 4], "en", index=n // 6) for n in range(1200)]
    produce(worker, topic, [(t.call_id, codec.encode_transcript(t, topic)) for t in records])
    call_ids = {t.call_id for t in records}
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while worker.metrics().get('callstt_translations_total{status="ok",target="pt"}', 0.0) < 1:
            assert time.monotonic() < deadline, "the translator never started"
            time.sleep(0.05)
        worker.kill()
        out_at_kill = {t.transcript_id for t in translations(worker, call_ids, expected=len(records), timeout=5)}
        worker.start()
        found = translations(worker, call_ids, expected=len(records), timeout=120)
    finally:
        worker.stop()
    by_transcript: dict[str, set[str]] = {}
    for translation in found:
        by_transcript.setdefault(translation.transcript_id, set()).add(translation.translation_id)
    assert set(by_transcript) == {t.transcript_id for t in records}  # nothing lost
    assert all(len(ids) == 1 for ids in by_transcript.values())  # a repeat has the same id
    print(f"{len(found)} translations for {len(records)} transcripts ({len(found) - len(records)} repeated); "
          f"{len(out_at_kill)} out at the kill")
    assert 0 < len(out_at_kill) < len(records), \
        f"the kill landed after the last translation ({len(out_at_kill)} of {len(records)} out): nothing was interrupted"


def translation(call_id: str, text: str, index: int, target: str = "pt", stream_id: str = "caller") -> Translation:
    """An OK Translation as the translator publishes it (no sentence alignment: spoken as one piece)."""
    source = transcript_id(call_id, stream_id, index)
    return Translation(translation_id=translation_id(source, target), transcript_id=source, call_id=call_id,
                       stream_id=stream_id, utterance_index=index, source_language="en", target_language=target,
                       status=TranslationStatus.OK, text=text, backend="test",
                       transcript_produced_ts_ms=1_795_000_000_000, produced_ts_ms=int(time.time() * 1000))


def test_a_sigkilled_speaker_loses_no_speech_and_repeats_only_identical_chunks(kafka_bootstrap, tmp_path):
    """A backlog of translations, the speaker killed as soon as its first chunk is out, a
    replacement started: every translation ends up with all its chunks (per utterance the
    sequence numbers utterance_index * 100000 + 0..n-1, no hole); a chunk published twice has the
    same sequence number and the same audio both times. Then that the kill did land mid-speech
    (some chunks out, not all, read on the topic between the kill and the restart), or the test
    proved nothing: checked apart, after the outcome, whatever this machine's speed."""
    from callstt.models.voices.synth import synthesize
    from callstt.schemas.records import SPEECH_SEQ_PER_UTTERANCE as SEQ_PER_UTTERANCE
    from callstt.streams.speech.core import leg
    from callstt.streams.speech.core import speech_chunks as chunks_of

    worker = WorkerProcess(kafka_bootstrap, tmp_path, command="speaker",
                           extra_env={"CALLSTT_KAFKA_SESSION_TIMEOUT_S": "10"})
    ensure_topics(worker.settings())
    codec, topic = AvroCodec(), worker.translation_topic
    sentences = ["Obrigado por ligar.", "Por favor, ligue-me amanhã de manhã."]
    records = [translation(f"speak-{n % 4}", sentences[n % 2], index=n // 4) for n in range(60)]
    lengths = {t.text: sum(map(len, chunks_of(t, synthesize))) for t in records[:len(sentences)]}  # chunks each
    expected = {(t.call_id, leg(t), t.utterance_index * SEQ_PER_UTTERANCE + n)
                for t in records for n in range(lengths[t.text])}
    produce(worker, topic, [(t.call_id, codec.encode_translation(t, topic)) for t in records])
    call_ids = {t.call_id for t in records}
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while worker.metrics().get('callstt_speech_chunks_total{language="pt",voice="espeak-ng"}', 0.0) < 1:
            assert time.monotonic() < deadline, "the speaker never started"
            time.sleep(0.05)
        worker.kill()
        out_at_kill = {(c.call_id, c.stream_id, c.seq) for c in speech_chunks(worker, call_ids, timeout=30, idle_s=2)}
        worker.start()
        chunks = speech_chunks(worker, call_ids, timeout=90, idle_s=3, expected=expected)
    finally:
        worker.stop()

    first: dict[tuple[str, str, int], bytes] = {}
    for chunk in chunks:  # a repeat: the same sequence number, the same audio
        assert first.setdefault((chunk.call_id, chunk.stream_id, chunk.seq), chunk.payload) == chunk.payload, chunk.seq
    per_utterance: dict[tuple[str, str, int], set[int]] = {}
    for call_id, stream_id, seq in first:
        per_utterance.setdefault((call_id, stream_id, seq // SEQ_PER_UTTERANCE), set()).add(seq % SEQ_PER_UTTERANCE)
    assert set(per_utterance) == {(t.call_id, leg(t), t.utterance_index) for t in records}  # every translation spoken
    holes = {key: sorted(set(range(max(seqs) + 1)) - seqs) for key, seqs in per_utterance.items()
             if seqs != set(range(max(seqs) + 1))}
    assert holes == {}
    assert set(first) == expected  # and to its end
    print(f"{len(chunks)} chunks for {len(expected)} expected ({len(chunks) - len(expected)} repeated); "
          f"{len(out_at_kill)} out at the kill")
    assert 0 < len(out_at_kill) < len(expected), \
        f"the kill landed after the last chunk ({len(out_at_kill)} of {len(expected)} out): nothing was interrupted"


# Said digit by digit, as callers read a card out: the interims see the number grow.
CARD_AND_PHONE = ("Sure, my card number is 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1, and my phone number is "
                  "4 1 5 5 5 5 2 6 7 1. Thank you.")
DIGIT_WORDS = {"zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",  # English
               "dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove"}  # and Portuguese ("um": "a")


def says_a_digit(text: str) -> bool:
    return any(char.isdigit() for char in text) or bool(DIGIT_WORDS & set(re.findall(r"[^\W\d_]+", text.lower())))


def test_a_redacting_call_never_shows_a_number_being_said_in_an_interim_or_its_translation(translator, tmp_path):
    """Issue 23: with redaction on, an interim (and its stable prefix, which never changes later)
    used to carry the card digits while they were being said. A worker on the translator's topics
    hears a card number and a phone number in real time; no interim, stable prefix or interim
    translation of the call says a digit, while the final carries the placeholders."""
    worker = WorkerProcess(translator.bootstrap, tmp_path, name=translator.name).start()
    call_id = f"redact-interims-{uuid.uuid4().hex[:6]}"
    try:
        worker.set_call_settings(CallSettings(call_id=call_id, redact=("card", "phone", "email"), translate_to=("pt",),
                                              translate_interims=True))
        set_call_settings(translator, CallSettings(call_id=call_id, redact=("card", "phone", "email"), translate_to=("pt",),
                                                   translate_interims=True))
        speech = synthesize(CARD_AND_PHONE, "en")
        audio = np.concatenate([np.zeros(8000, dtype=np.float32), speech, np.zeros(2 * 16000, dtype=np.float32)])
        with worker.publisher() as publisher:
            publisher.publish_call(audio, call_id, "caller", chunk_ms=100, realtime=True)
        finals = by_call(worker.transcripts(expected=1, call_ids={call_id}, idle_s=4.0))[call_id]
        interims = worker.interims({call_id})
        interim_translations = translations(translator, {call_id}, expected=1, timeout=30,
                                            topic=translator.partial_translation_topic)
        final_translations = translations(translator, {call_id}, expected=len(finals))
    finally:
        worker.stop()

    final_text = " ".join(t.text for t in finals)
    counted = {kind: sum(t.redactions.get(kind, 0) for t in finals) for kind in ("card", "phone")}
    assert counted == {"card": 1, "phone": 1} and not says_a_digit(final_text), (final_text, counted)
    assert interims, ("no interim published (the worker runs them only while it keeps up with the call in real "
                      "time: this test needs a machine that does)")
    for interim in interims:
        assert not says_a_digit(interim.text) and not says_a_digit(interim.stable_text), (
            interim.revision, interim.text, interim.stable_text)
    assert any("card" in interim.stable_text for interim in interims), [t.text for t in interims]  # not all held
    for translation in interim_translations + final_translations:
        assert not says_a_digit(translation.text), translation.text
