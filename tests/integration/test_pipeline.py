"""The stream processor end to end: real broker, real packaged model, a real worker process."""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import replace

import numpy as np
import pytest
from confluent_kafka import Consumer

from callstt.models.voices.synth import ENGLISH_SENTENCES, VIETNAMESE_SENTENCES, conversation, synthesize
from callstt.schemas.codec import AvroCodec
from callstt.schemas.records import CallSettings
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from callstt.streams.core_from_settings import build_pipeline
from tests.pipeline import WorkerProcess, by_call

pytestmark = pytest.mark.integration

EN = ENGLISH_SENTENCES[:3]
VI = VIETNAMESE_SENTENCES[:2]
FORMATS = {
    "mulaw-8k-20ms": ChunkPlan(sample_rate=8000, encoding="MULAW", chunk_ms=20),
    "pcm-16k-100ms": ChunkPlan(sample_rate=16000, encoding="PCM_S16LE", chunk_ms=100),
}


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    process = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("worker")).start()
    yield process
    process.stop()


def call_chunks(sentences, language, plan, call_id, hint=None):
    audio = conversation(sentences, language, sample_rate=plan.sample_rate)
    return list(iter_chunks(audio, call_id, "caller", plan, start_ms=1_700_000_000_000, language=hint))


def publish_interleaved(worker, *calls):
    """Send several calls' chunks alternately, as concurrent calls arrive."""
    with worker.publisher() as publisher:
        longest = max(len(chunks) for chunks in calls)
        for index in range(longest):
            for chunks in calls:
                if index < len(chunks):
                    publisher.send(chunks[index])


@pytest.fixture(scope="module")
def direct_english_wer(base_model):
    hypotheses = [base_model.transcribe(synthesize(text, "en"), language="en").text for text in EN]
    return word_error_rate(EN, hypotheses)


def assert_transcribed_or_dropped(worker, call_id: str, count: int, transcripts) -> None:
    """Every utterance of the call either came out or was dropped by the guard with its reason in
    the worker's log (espeak's Vietnamese is hard for the base model: a decode that loops is
    dropped as invented text, models/text/guard.py). Whether a decode loops depends on which
    utterances share the model's window (packed inference), so on timing: all of them were
    dropped in one CI run; the Vietnamese route's own tests check that Vietnamese comes out."""
    arrived = {t.utterance_index for t in transcripts}
    log = worker.log_tail(3000)
    for index in range(count):
        assert index in arrived or f"no transcript for call={call_id} stream=caller #{index} " in log, index


@pytest.mark.parametrize("format_name", FORMATS)
def test_two_concurrent_calls_give_one_transcript_per_sentence(worker, format_name, direct_english_wer):
    plan = FORMATS[format_name]
    english, vietnamese = f"en-{format_name}-{uuid.uuid4().hex[:6]}", f"vi-{format_name}-{uuid.uuid4().hex[:6]}"
    publish_interleaved(worker, call_chunks(EN, "en", plan, english),
                        call_chunks(VI, "vi", plan, vietnamese, hint="vi"))

    calls = by_call(worker.transcripts(expected=len(EN) + len(VI), call_ids={english, vietnamese}))

    assert [t.utterance_index for t in calls[english]] == list(range(len(EN)))
    vietnamese_transcripts = calls.get(vietnamese, [])
    assert_transcribed_or_dropped(worker, vietnamese, len(VI), vietnamese_transcripts)
    assert {t.language for t in calls[english]} == {"en"}
    assert {t.language for t in vietnamese_transcripts} <= {"vi"}
    for transcript in calls[english] + vietnamese_transcripts:
        assert transcript.is_final and transcript.words and transcript.sentences
        assert transcript.model_name == "base" and transcript.backend == "faster-whisper"
        for word in transcript.words:
            assert transcript.start_ms <= word.start_ms <= word.end_ms <= transcript.end_ms
        assert transcript.last_audio_capture_ts_ms >= 1_700_000_000_000
        assert transcript.produced_ts_ms >= transcript.last_audio_received_ts_ms
    wer = word_error_rate(EN, [t.text for t in calls[english]])
    print(f"{format_name}: pipeline WER {wer:.3f}, direct WER {direct_english_wer:.3f}")
    assert wer <= 0.15
    assert wer <= direct_english_wer + 0.02


def test_utterances_of_concurrent_calls_share_model_calls_without_losing_accuracy(worker, direct_english_wer):
    """Calls arriving together: the worker packs their utterances into shared model calls (the
    default CALLSTT_INFERENCE_MODE=packed), and every transcript is as good and as well timed."""
    plan = FORMATS["mulaw-8k-20ms"]
    sentences = {f"pack{n}-{uuid.uuid4().hex[:6]}": [EN[(n + i) % len(EN)] for i in range(3)] for n in range(4)}
    before = worker.metrics()
    publish_interleaved(worker, *[call_chunks(texts, "en", plan, call_id) for call_id, texts in sentences.items()])

    calls = by_call(worker.transcripts(expected=12, call_ids=set(sentences)))
    after = worker.metrics()

    model_calls = after["callstt_utterances_per_model_call_count"] - before["callstt_utterances_per_model_call_count"]
    utterances = after["callstt_utterances_per_model_call_sum"] - before["callstt_utterances_per_model_call_sum"]
    print(f"{utterances:.0f} utterances in {model_calls:.0f} model calls")
    assert utterances >= 12 and model_calls < utterances  # some model calls carried several utterances
    references, hypotheses = [], []
    for call_id, texts in sentences.items():
        assert [t.utterance_index for t in calls[call_id]] == [0, 1, 2]
        for transcript in calls[call_id]:
            assert transcript.language == "en" and transcript.words
            for word in transcript.words:  # words split back to their own utterance
                assert transcript.start_ms <= word.start_ms <= word.end_ms <= transcript.end_ms
        references += texts
        hypotheses += [t.text for t in calls[call_id]]
    wer = word_error_rate(references, hypotheses)
    print(f"packed pipeline WER {wer:.3f}, direct WER {direct_english_wer:.3f}")
    assert wer <= max(0.15, direct_english_wer + 0.05)


def test_silence_and_noise_produce_no_transcript(worker):
    plan = FORMATS["pcm-16k-100ms"]
    rng = np.random.default_rng(7)
    silence = np.zeros(16000 * 6, dtype=np.float32)
    noise = (rng.standard_normal(16000 * 6) * 0.01).astype(np.float32)
    sentinel = f"sentinel-{uuid.uuid4().hex[:6]}"
    with worker.publisher() as publisher:
        for name, audio in (("silence", silence), ("noise", noise)):
            # Captured now: interims run only for calls the worker keeps up with.
            for chunk in iter_chunks(audio, f"{name}-{sentinel}", "caller", plan, int(time.time() * 1000)):
                publisher.send(chunk)
        for chunk in call_chunks(EN[:1], "en", plan, sentinel):
            publisher.send(chunk)

    calls = by_call(worker.transcripts(expected=1, call_ids={sentinel}))
    assert set(calls) >= {sentinel}
    assert f"silence-{sentinel}" not in calls and f"noise-{sentinel}" not in calls
    assert worker.interims({f"silence-{sentinel}", f"noise-{sentinel}"}) == []  # and no interim either


def test_duplicate_and_reordered_chunks_give_the_same_transcripts(worker):
    plan = FORMATS["mulaw-8k-20ms"]
    clean_id, messy_id = f"clean-{uuid.uuid4().hex[:6]}", f"messy-{uuid.uuid4().hex[:6]}"
    clean = call_chunks(EN[:2], "en", plan, clean_id)
    messy = [replace(chunk, call_id=messy_id) for chunk in clean]
    rng = random.Random(3)
    for start in range(0, len(messy) - 4, 9):  # shuffle small windows, as a jittery network would
        window = messy[start:start + 4]
        rng.shuffle(window)
        messy[start:start + 4] = window
    messy += [messy[i] for i in rng.sample(range(len(messy) - 1), 15)]  # and resend some
    messy.sort(key=lambda chunk: chunk.end_of_stream)  # the end marker still comes last
    publish_interleaved(worker, clean, messy)

    calls = by_call(worker.transcripts(expected=4, call_ids={clean_id, messy_id}))
    # The same utterances, cut at the same places from the same audio...
    assert [(t.start_ms, t.end_ms) for t in calls[messy_id]] == [(t.start_ms, t.end_ms) for t in calls[clean_id]]
    # ... and the same words, but for what sharing a packed window does: the two calls' utterances
    # meet the model side by side, and a neighbour can change a word ("book" / "mook").
    assert word_error_rate([t.text for t in calls[clean_id]], [t.text for t in calls[messy_id]]) <= 0.1


def dead_letters(worker, expected: int, timeout: float = 60.0) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = Consumer({"bootstrap.servers": worker.bootstrap, "group.id": f"dlq-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([worker.dead_letter_topic])
    records = []
    try:
        import time

        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                records.append((message.value(), dict(message.headers() or [])))
    finally:
        consumer.close()
    return records


def test_bad_input_goes_to_the_dead_letter_topic_and_good_calls_go_on(worker):
    plan = FORMATS["pcm-16k-100ms"]
    call_id = f"shared-{uuid.uuid4().hex[:6]}"  # bad records share the good call's key, so its partition
    good = call_chunks(EN[:1], "en", plan, call_id)
    codec = AvroCodec()
    template = replace(good[0], stream_id="bad")
    valid = codec.encode_chunk(template, worker.audio_topic)
    encode = lambda **fields: codec.encode_chunk(replace(template, **fields), worker.audio_topic)  # noqa: E731
    bad_records = [
        ("bad_magic_byte", bytes(random.Random(1).getrandbits(8) for _ in range(64)).replace(b"\x00", b"\x01")),
        ("truncated_avro", valid[: len(valid) // 2]),
        ("bad_sample_rate", encode(sample_rate=12345)),
        ("bad_sample_rate", encode(sample_rate=0)),
        ("bad_sample_rate", encode(sample_rate=10**9)),
        ("partial_sample", encode(payload=b"\x01\x02\x03")),
        ("oversized_chunk", encode(payload=bytes(16000 * 2 * 10))),
        ("oversized_chunk", encode(payload=bytes(900_000))),  # close to the broker's 1 MB message limit
        ("negative_seq", encode(seq=-5)),
        ("seq_jump", encode(seq=10**12)),  # would be 600 years of silence to fill
        ("bad_channels", encode(channels=0)),
    ]
    with worker.publisher() as publisher:
        for index, chunk in enumerate(good):
            publisher.send(chunk)
            if index == 3:
                for _, value in bad_records:
                    publisher.send_raw(call_id, value)

    calls = by_call(worker.transcripts(expected=1, call_ids={call_id}))
    assert len(calls[call_id]) == 1
    records = dead_letters(worker, expected=len(bad_records))
    received = sorted((headers["reason"].decode(), value) for value, headers in records)
    assert received == sorted(bad_records)  # each with its reason, the raw record unchanged


def test_a_call_that_never_ends_is_flushed_then_forgotten(kafka_bootstrap, tmp_path):
    """Its stream is flushed when it goes quiet and forgotten after the stream TTL; its settings
    are forgotten after theirs (CALLSTT_CALL_SETTINGS_TTL_S), so the table stays bounded."""
    import httpx

    worker = WorkerProcess(kafka_bootstrap, tmp_path, extra_env={"CALLSTT_IDLE_FLUSH_S": "2",
                                                                "CALLSTT_STREAM_TTL_S": "6",
                                                                "CALLSTT_CALL_SETTINGS_TTL_S": "8"}).start()
    try:
        call_id = f"endless-{uuid.uuid4().hex[:6]}"
        worker.set_call_settings(CallSettings(call_id=call_id, hotwords=("Zyntra",)))
        plan = FORMATS["pcm-16k-100ms"]
        speech = synthesize(EN[0], "en")  # no trailing silence and no end_of_stream: the producer vanished
        chunks = [replace(chunk, end_of_stream=False) for chunk in iter_chunks(speech, call_id, "caller", plan, 0)]
        with worker.publisher() as publisher:
            for chunk in chunks:
                publisher.send(chunk)
        calls = by_call(worker.transcripts(expected=1, idle_s=1))
        assert word_error_rate(EN[0], calls[call_id][0].text) <= 0.15

        def streams():
            return httpx.get(f"http://127.0.0.1:{worker.web_port}/calls", headers=worker.web_headers()).json()["streams"]

        import time

        deadline = time.monotonic() + 30
        while any(s["call_id"] == call_id for s in streams()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(s["call_id"] == call_id for s in streams())
        assert "evicting stream call=" + call_id in worker.log_tail(200)

        deadline = time.monotonic() + 30
        while worker.metrics().get('callstt_call_settings_total{action="expired"}', 0) < 1 \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.metrics().get('callstt_call_settings_total{action="expired"}', 0) == 1
        assert "call settings expired for call=" + call_id in worker.log_tail(200)
    finally:
        worker.stop()


def test_a_call_restricted_to_vi_and_en_never_labels_a_call_another_language(worker):
    """Call settings languages=vi,en: unhinted calls, one Vietnamese (espeak's voice, which the base
    model often hears as Thai) and one English, come out labelled vi or en only."""
    plan = FORMATS["pcm-16k-100ms"]
    english, vietnamese = f"r-en-{uuid.uuid4().hex[:6]}", f"r-vi-{uuid.uuid4().hex[:6]}"
    for call_id in (english, vietnamese):
        worker.set_call_settings(CallSettings(call_id=call_id, languages=("vi", "en")))
    vi_sentences = VIETNAMESE_SENTENCES[:4]
    publish_interleaved(worker, call_chunks(EN[:2], "en", plan, english),
                        call_chunks(vi_sentences, "vi", plan, vietnamese))
    calls = by_call(worker.transcripts(expected=2 + len(vi_sentences), call_ids={english, vietnamese}))
    labels = {call: [t.language for t in transcripts] for call, transcripts in calls.items()}
    print("languages:", labels)
    assert {language for found in labels.values() for language in found} <= {"vi", "en"}
    assert labels[english] == ["en", "en"]
    assert_transcribed_or_dropped(worker, vietnamese, len(vi_sentences), calls.get(vietnamese, []))


# Spoken as a caller reads them out; what the packaged model writes for each (checked by hand):
# "4532, 0151, 1283, 0366", "415, 555, 2671", "Mary.Jones at gmail.com", "7721 ... 1045" (the same
# alone and packed with the others; "Please call me at ..." came out "415552671" when packed).
REDACTION_CALL = [
    ("My card number is 4 5 3 2, 0 1 5 1, 1 2 8 3, 0 3 6 6.", "card"),
    ("My phone number is 4 1 5, 5 5 5, 2 6 7 1.", "phone"),
    ("My address is mary.jones@gmail.com.", "email"),
    ("Your order 7 7 2 1 9 arrives at 10:45 tomorrow.", None),
]


def test_a_redacting_call_yields_placeholders_and_none_of_the_digits_while_order_numbers_stay(worker):
    plan = FORMATS["pcm-16k-100ms"]
    redacted, plain = f"redact-{uuid.uuid4().hex[:6]}", f"plain-{uuid.uuid4().hex[:6]}"
    worker.set_call_settings(CallSettings(call_id=redacted, redact=("card", "phone", "email")))
    sentences = [text for text, _ in REDACTION_CALL]
    publish_interleaved(worker, call_chunks(sentences, "en", plan, redacted),
                        call_chunks(sentences[:1], "en", plan, plain))
    calls = by_call(worker.transcripts(expected=len(sentences) + 1, call_ids={redacted, plain}))
    transcripts = calls[redacted]
    print([(t.text, dict(t.redactions)) for t in transcripts])
    assert len(transcripts) == len(sentences)
    for transcript, (_, kind) in zip(transcripts, REDACTION_CALL):
        words = [w.text for w in transcript.words]
        if kind is None:  # the order number and the time are kept
            assert dict(transcript.redactions) == {} and re.search(r"\d{4}", transcript.text), transcript.text
            continue
        placeholder = f"[{kind.upper()}]"
        assert dict(transcript.redactions) == {kind: 1}, transcript.text
        assert placeholder in transcript.text and sum(placeholder in w for w in words) == 1, words
        # Over the exact words: the sentence's lead-in is intact before it, nothing of the value after it.
        lead = {"card": "is", "phone": "is", "email": "is"}[kind]
        at = next(i for i, w in enumerate(words) if placeholder in w)
        assert words[at - 1].lower().strip(",.") == lead, words
        everything = " ".join([transcript.text, *words, *(s.text for s in transcript.sentences)])
        assert not re.search(r"\d", everything) and "jones" not in everything.lower(), everything
        word = transcript.words[at]
        assert transcript.start_ms <= word.start_ms < word.end_ms <= transcript.end_ms
    [unredacted] = calls[plain]  # another call, without settings: the worker's default (no redaction)
    assert not unredacted.redactions and re.search(r"\d{4}", unredacted.text), unredacted.text


def test_a_call_with_a_vocabulary_gets_its_rare_words_right_more_often(worker):
    """Call settings carry hotwords to the model: the same five sentences with invented brand names
    and uncommon surnames (streams/bench/evaluation/rare_words.py), one call with the call's vocabulary, one without."""
    from callstt.streams.bench.evaluation.rare_words import RARE_WORD_SET, rare_word_hits

    items = [RARE_WORD_SET[i] for i in (0, 1, 4, 6, 10)]  # Zyntra, Kowalczyk, Blissbay, Draxiflo, Quorvex/Fibrelink
    plan = FORMATS["pcm-16k-100ms"]
    with_words, without = f"vocab-{uuid.uuid4().hex[:6]}", f"novocab-{uuid.uuid4().hex[:6]}"
    worker.set_call_settings(CallSettings(call_id=with_words,
                                          hotwords=tuple(w for item in items for w in item.rare_words)))
    sentences = [item.text for item in items]
    publish_interleaved(worker, call_chunks(sentences, "en", plan, with_words),
                        call_chunks(sentences, "en", plan, without))
    calls = by_call(worker.transcripts(expected=2 * len(items), call_ids={with_words, without}))

    def found(call_id: str) -> int:
        texts = [t.text for t in calls[call_id]]
        assert len(texts) == len(items), texts
        return sum(rare_word_hits(item, text)[0] for item, text in zip(items, texts))

    hits_with, hits_without = found(with_words), found(without)
    print("rare words found with / without the vocabulary:", hits_with, hits_without)
    assert hits_with >= max(2 * hits_without, 4), (calls[with_words], calls[without])



def trimmed(audio: np.ndarray) -> np.ndarray:
    """espeak's speech without the silence it adds around it (so a pause is exactly what the test puts)."""
    loud = np.nonzero(np.abs(audio) > 1e-3)[0]
    return audio[loud[0]:loud[-1] + 1]


def cut_points(chunks) -> tuple[list[int], list[int]]:
    """The chunk indices at which the worker's own path (same assembly, VAD, endpointing and
    default settings) cuts speculatively, and finally."""
    from callstt.streams.core.pipeline import MemoryStore
    from callstt.streams.settings import Settings

    batch = build_pipeline(Settings.from_env({})).batch(MemoryStore().get)
    speculative, final = [], []
    for index, chunk in enumerate(chunks):
        outcome = batch.accept_chunk(chunk, 0, None)
        speculative += [index] * len(outcome.speculative)
        final += [index] * len(outcome.utterances)
    return speculative, final


def publish_now(worker, chunks) -> None:
    """Chunks as if captured just now, 20 ms apart, the last one this moment (the worker's
    speculative work only runs for calls that are on time)."""
    now = int(time.time() * 1000)
    with worker.publisher() as publisher:
        for index, chunk in enumerate(chunks):
            publisher.send(replace(chunk, capture_ts_ms=now - (len(chunks) - 1 - index) * 20))


def wait_for_metric(worker, name: str, at_least: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while worker.metrics().get(name, 0.0) < at_least:
        seen = {key: value for key, value in worker.metrics().items() if "chunks" in key or "utterances" in key}
        assert time.monotonic() < deadline, f"{name} stayed below {at_least}: {seen}"
        time.sleep(0.1)


def test_speech_coming_back_within_the_hangover_gives_one_transcript_and_no_speculative_text(worker):
    """A 400 ms pause is long enough for a speculative cut (CALLSTT_SPECULATE_MS, 300) but not for
    the 600 ms hangover: the model runs on the first sentence alone, then the speaker goes on.
    That result must never be published: the call gets one transcript with both sentences
    (taken from the speculation made once the speaker stopped for good when the worker keeps up
    in real time, else from the final cut)."""
    first, second = (trimmed(synthesize(text, "en")) for text in EN[:2])
    pause, tail = np.zeros(int(0.4 * 16000), dtype=np.float32), np.zeros(2 * 16000, dtype=np.float32)
    audio = np.concatenate([np.zeros(8000, dtype=np.float32), first, pause, second, tail])
    call_id = f"resume-{uuid.uuid4().hex[:6]}"
    chunks = list(iter_chunks(audio, call_id, "caller", ChunkPlan(16000, "PCM_S16LE", 20), start_ms=0))
    speculative, final = cut_points(chunks)
    assert len(speculative) == 2 and len(final) == 1 and speculative[1] < final[0], (speculative, final)

    run, used, discarded = (f'callstt_speculative_utterances_total{{outcome="{outcome}"}}'
                            for outcome in ("run", "used", "discarded"))
    before = worker.metrics()
    # Up to the first speculative cut (and a little silence): the model runs on the first sentence.
    publish_now(worker, chunks[:speculative[0] + 3])
    wait_for_metric(worker, run, before.get(run, 0.0) + 1)
    # The speaker goes on; the second cut replaces the first speculation (discarded, wasted work).
    publish_now(worker, chunks[speculative[0] + 3:speculative[1] + 3])
    wait_for_metric(worker, discarded, before.get(discarded, 0.0) + 1)
    # The silence reaches the hangover: the final cut takes the second speculation's result.
    publish_now(worker, chunks[speculative[1] + 3:])
    transcripts = by_call(worker.transcripts(expected=1, call_ids={call_id}, idle_s=4.0))[call_id]
    after = worker.metrics()

    assert [t.utterance_index for t in transcripts] == [0], [t.text for t in transcripts]
    assert word_error_rate([" ".join(EN[:2])], [transcripts[0].text]) <= 0.2, transcripts[0].text
    counted = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in (run, used, discarded)}
    # The first speculation ran (waited for above) and was thrown away unpublished. Whether the
    # second one also ran and was used depends on the worker keeping up in real time (it skips
    # speculation for a call it is behind on): on a loaded machine the final cut runs the model
    # itself, which changes when the transcript leaves, not what it says.
    assert counted[run] >= 1 and counted[discarded] >= 1 and counted[used] <= counted[run] - counted[discarded], \
        counted


def interim_cuts(chunks) -> int:
    """How many interim cuts the worker's own path makes of these chunks (default settings)."""
    from callstt.streams.core.pipeline import MemoryStore
    from callstt.streams.settings import Settings

    batch = build_pipeline(Settings.from_env({})).batch(MemoryStore().get)
    return sum(len(batch.accept_chunk(chunk, 0, None).interim) for chunk in chunks)


def test_a_long_utterance_streamed_in_real_time_gives_interims_then_the_same_final(worker, base_model):
    """About 10 s of English without a pause long enough to end it, at the pace a call platform
    sends it: the worker publishes interims of the open utterance, revision after revision,
    whose stable words never change, before its final; the final is what the final path gives
    with interims off (a replay of the call)."""
    from callstt.models.asr.routing import ModelRouter
    from callstt.streams.replay import replay_calls

    sentences = ENGLISH_SENTENCES[1:5]
    gap = np.zeros(int(0.2 * 16000), dtype=np.float32)
    speech = np.concatenate([piece for text in sentences for piece in (trimmed(synthesize(text, "en")), gap)])
    audio = np.concatenate([np.zeros(8000, dtype=np.float32), speech, np.zeros(2 * 16000, dtype=np.float32)])
    call_id = f"interims-{uuid.uuid4().hex[:6]}"
    chunks = list(iter_chunks(audio, call_id, "caller", ChunkPlan(16000, "PCM_S16LE", 100), start_ms=0))
    assert 8 <= len(speech) / 16000 <= 14 and interim_cuts(chunks) >= 6, len(speech) / 16000  # precondition

    with worker.publisher() as publisher:
        publisher.publish_call(audio, call_id, "caller", chunk_ms=100, realtime=True)
    finals = by_call(worker.transcripts(expected=1, call_ids={call_id}, idle_s=3.0))[call_id]
    interims = worker.interims({call_id})

    assert len(finals) == 1, [t.text for t in finals]
    final = finals[0]
    assert len(interims) >= 3, ("fewer than 3 interims (the worker runs them only while it keeps up with the call "
                                "in real time: this test needs a machine that does)", [(t.revision, t.text) for t in interims])
    assert all(not t.is_final and t.transcript_id == final.transcript_id and t.utterance_index == 0 for t in interims)
    assert all(t.produced_ts_ms <= final.produced_ts_ms for t in interims)
    revisions = [t.revision for t in interims]
    assert revisions == sorted(set(revisions)), revisions  # increasing, as published
    for earlier, later in zip(interims, interims[1:]):  # what was stable stays, word for word
        assert later.stable_word_count >= earlier.stable_word_count
        assert [w.text for w in later.words[:earlier.stable_word_count]] == \
            [w.text for w in earlier.words[:earlier.stable_word_count]]
        assert later.text.startswith(earlier.stable_text)
    assert interims[-1].stable_word_count >= 3 and len(interims[-1].words) > len(interims[0].words)
    print("interims:", [(t.revision, t.stable_text, t.text) for t in interims], "final:", final.text)
    assert word_error_rate([" ".join(sentences)], [final.text]) <= 0.2, final.text

    replayed = []
    replay_calls(worker.settings(), ModelRouter(base_model), f"{worker.name}.replayed", "replay",
                 call_ids={call_id}, on_transcript=replayed.append)
    assert [(t.transcript_id, t.text) for t in replayed] == [(final.transcript_id, final.text)]
