"""Which options a stream gets: its own, else its call's, else the worker's defaults (pure)."""

from __future__ import annotations

import pytest

from callstt.models.text.vocabulary import Vocabulary
from callstt.schemas.records import CallSettings, StreamSettings
from callstt.streams.core.call_options import CallDefaults, resolve, settings_expired
from callstt.streams.core.pipeline import Pipeline, Rejected
from callstt.streams.core.redaction import RedactionConfig
from callstt.streams.core_from_settings import pipeline_config
from callstt.streams.settings import Settings, SettingsError

DEFAULTS = CallDefaults(languages=("en",), vocabulary=Vocabulary(("Zyntra",), "Support call."),
                        redaction=RedactionConfig.parse("card", phone_region="GB"))


def test_a_call_without_settings_gets_the_worker_defaults():
    options = resolve(None, "caller", DEFAULTS)
    assert (options.languages, options.vocabulary, options.redaction) == (
        ("en",), DEFAULTS.vocabulary, DEFAULTS.redaction)


def test_the_stream_wins_over_the_call_and_the_call_over_the_defaults():
    call = CallSettings(call_id="c", languages=("VI", "en"), hotwords=("Kowalczyk",),
                        streams=(StreamSettings(stream_id="agent", languages=("en",), initial_prompt="Agent."),))
    caller, agent = resolve(call, "caller", DEFAULTS), resolve(call, "agent", DEFAULTS)
    assert caller.languages == ("vi", "en") and agent.languages == ("en",)
    assert caller.vocabulary == Vocabulary(("Kowalczyk",), "Support call.")  # prompt not set: the default's
    assert agent.vocabulary == Vocabulary(("Kowalczyk",), "Agent.")


def test_an_empty_list_switches_an_option_off_and_none_keeps_the_default():
    off = resolve(CallSettings(call_id="c", languages=(), hotwords=(), initial_prompt="", redact=()), "s", DEFAULTS)
    assert off.languages == () and not off.vocabulary and not off.redaction.kinds
    kept = resolve(CallSettings(call_id="c"), "s", DEFAULTS)
    assert kept.redaction == DEFAULTS.redaction and kept.vocabulary == DEFAULTS.vocabulary


def test_a_call_choosing_redaction_keeps_the_worker_patterns_and_region():
    options = resolve(CallSettings(call_id="c", redact=("phone", "email")), "s", DEFAULTS)
    assert options.redaction.kinds == {"phone", "email"} and options.redaction.phone_region == "GB"


def test_the_worker_defaults_come_from_the_settings():
    settings = Settings.from_env({"CALLSTT_LANGUAGES": "vi, EN", "CALLSTT_HOTWORDS": "Zyntra, Quorvex",
                                  "CALLSTT_INITIAL_PROMPT": "A support call.", "CALLSTT_REDACT": "all"})
    defaults = pipeline_config(settings).defaults
    assert defaults.languages == ("vi", "en")
    assert defaults.vocabulary == Vocabulary(("Zyntra", "Quorvex"), "A support call.")
    assert defaults.redaction.kinds == {"card", "phone", "email"}
    with pytest.raises(SettingsError, match="CALLSTT_REDACT"):
        pipeline_config(Settings.from_env({"CALLSTT_REDACT": "cards"}))


def test_call_settings_the_worker_cannot_use_are_rejected_with_a_reason():
    pipeline = Pipeline()
    codec = pipeline.codec
    bad_kind = codec.encode_call_settings(CallSettings(call_id="c", redact=("cards",)), "t")
    other_call = codec.encode_call_settings(CallSettings(call_id="d"), "t")
    assert isinstance(pipeline.decode_call_settings("c", bad_kind), Rejected)
    assert pipeline.decode_call_settings("c", bad_kind).reason == "bad_call_settings"
    assert pipeline.decode_call_settings("c", other_call).reason == "call_id_mismatch"
    assert pipeline.decode_call_settings("c", b"\x00junk").reason in ("short_frame", "unknown_schema_id", "truncated_avro")
    good = CallSettings(call_id="c", languages=("vi",))
    assert pipeline.decode_call_settings("c", codec.encode_call_settings(good, "t")) == good


def test_settings_reach_the_batch_and_a_tombstone_forgets_them():
    store: dict[str, bytes] = {}
    pipeline = Pipeline()
    batch = pipeline.batch(store.get)
    value = pipeline.codec.encode_call_settings(CallSettings(call_id="c", hotwords=("Zyntra",)), "t")
    assert batch.accept_call_settings("c", value, owner=None).hotwords == ("Zyntra",)
    assert batch.call_settings("c").hotwords == ("Zyntra",)
    store.update({key: v for key, v, _ in batch.changes() if v is not None})
    assert pipeline.batch(store.get).call_settings("c").hotwords == ("Zyntra",)
    later = pipeline.batch(store.get)
    assert later.accept_call_settings("c", None, owner=None) is None
    assert [(key, v) for key, v, _ in later.changes()] == [("C|c", None)]


def test_settings_are_stamped_when_received_and_forgotten_after_their_ttl():
    store: dict[str, bytes] = {}
    pipeline = Pipeline()
    batch = pipeline.batch(store.get)
    value = pipeline.codec.encode_call_settings(CallSettings(call_id="c", redact=("card",)), "t")
    assert batch.accept_call_settings("c", value, owner=None, received_ms=1_000).updated_ts_ms == 1_000
    store.update({key: v for key, v, _ in batch.changes() if v is not None})
    assert pipeline.batch(store.get).call_settings("c").updated_ts_ms == 1_000  # kept with its time

    young = pipeline.batch(store.get)
    assert not young.expire_call_settings("c", now_ms=60_000, ttl_ms=60_000, owner=None)
    assert list(young.changes()) == []
    old = pipeline.batch(store.get)
    assert old.expire_call_settings("c", now_ms=61_000, ttl_ms=60_000, owner=None)
    assert [(key, v) for key, v, _ in old.changes()] == [("C|c", None)]
    assert not pipeline.batch({}.get).expire_call_settings("c", now_ms=61_000, ttl_ms=1, owner=None)  # none kept


def test_settings_with_their_own_time_keep_it_and_settings_without_a_time_never_expire():
    assert settings_expired(CallSettings(call_id="c", updated_ts_ms=5), now_ms=10, ttl_ms=5)
    assert not settings_expired(CallSettings(call_id="c", updated_ts_ms=6), now_ms=10, ttl_ms=5)
    assert not settings_expired(CallSettings(call_id="c"), now_ms=10**13, ttl_ms=5)
    pipeline = Pipeline()
    value = pipeline.codec.encode_call_settings(CallSettings(call_id="c", updated_ts_ms=42), "t")
    assert pipeline.batch({}.get).accept_call_settings("c", value, owner=None, received_ms=99).updated_ts_ms == 42


def test_a_vocabulary_reaches_the_model_as_one_written_prompt():
    assert Vocabulary().prompt_text() is None and not Vocabulary()
    assert Vocabulary(("Zyntra", " Kowalczyk "), "Support call").prompt_text() == \
        "Support call. Names and terms: Zyntra, Kowalczyk."
    assert Vocabulary((), "Billing question?").prompt_text() == "Billing question?"
