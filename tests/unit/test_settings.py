from __future__ import annotations

import pytest

from callstt.streams.settings import Settings, SettingsError


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.model == "base" and settings.compute_type == "int8" and settings.device == "cpu"
    assert settings.web_host == "127.0.0.1"


def test_seed_service_names_are_honoured():
    settings = Settings.from_env({"USE_PHOWHISPER": "true", "USE_FASTER_WHISPER": "0", "MODEL_SIZE": "tiny.en",
                                  "COMPUTE_TYPE": "float32", "DEVICE": "cuda", "OMP_NUM_THREADS": "4"})
    assert (settings.use_phowhisper, settings.use_faster_whisper) == (True, False)
    assert (settings.model, settings.compute_type, settings.device, settings.cpu_threads) == (
        "tiny.en", "float32", "cuda", 4)


def test_flags_override_the_environment():
    settings = Settings.from_env({"CALLSTT_AUDIO_TOPIC": "from-env"}, audio_topic="from-flag", model=None)
    assert settings.audio_topic == "from-flag" and settings.model == "base"


@pytest.mark.parametrize("name, value", [("CALLSTT_WEB_PORT", "eighty"), ("USE_PHOWHISPER", "maybe")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_schema_versions_pinned_for_an_upgrade_must_be_committed_earlier_versions():
    assert Settings.from_env({}).write_schema_versions == {}
    pinned = Settings.from_env({"CALLSTT_WRITE_SCHEMA_VERSIONS": "Transcript=3, CallSettings=1"})
    assert pinned.write_schema_versions == {"Transcript": 3, "CallSettings": 1}
    with pytest.raises(SettingsError, match="no earlier version 7"):
        Settings.from_env({"CALLSTT_WRITE_SCHEMA_VERSIONS": "Transcript=7"})
    with pytest.raises(SettingsError, match="use RECORD=VERSION"):
        Settings.from_env({"CALLSTT_WRITE_SCHEMA_VERSIONS": "Transcript"})


def test_inference_modes_offered_are_the_modes_batching_implements():
    """CALLSTT_INFERENCE_MODE's choices (the one list, in the settings) are exactly what transcribe_many accepts."""
    from dataclasses import fields

    import numpy as np

    from callstt.models.asr.batching import InferenceRequest, transcribe_many
    from callstt.models.asr.routing import Capabilities

    class Backend:
        backend_name, model_name, capabilities = "echo", "echo", Capabilities()

        def transcribe(self, audio, language, vocabulary=None):
            return ("transcribed", len(audio), language)

    [mode_field] = [f for f in fields(Settings) if f.name == "inference_mode"]
    choices = mode_field.metadata["choices"]
    assert choices == ("single", "batched", "packed") and Settings().inference_mode in choices
    requests = [InferenceRequest(np.zeros(1600, dtype=np.float32), "en")] * 2
    for mode in choices:
        assert transcribe_many(Backend(), requests, mode=mode) == [("transcribed", 1600, "en")] * 2
        assert Settings.from_env({"CALLSTT_INFERENCE_MODE": mode}).inference_mode == mode
    with pytest.raises(ValueError, match="unknown inference mode"):
        transcribe_many(Backend(), requests, mode="streamed")
    with pytest.raises(SettingsError, match="CALLSTT_INFERENCE_MODE='streamed': use one of single, batched, packed"):
        Settings.from_env({"CALLSTT_INFERENCE_MODE": "streamed"})


def test_use_faster_whisper_false_is_refused_not_ignored():
    """The seed service's USE_FASTER_WHISPER=false is read, and refused at start with what to do,
    before any model loads (the multilingual model runs on faster-whisper only)."""
    from callstt.streams.model_routes import build_router

    settings = Settings.from_env({"USE_FASTER_WHISPER": "false"})
    with pytest.raises(SettingsError, match="USE_FASTER_WHISPER=false is not supported.*USE_PHOWHISPER=true"):
        build_router(settings)


def test_every_topic_setting_can_be_named_under_another_prefix():
    """A test or bench worker's own topics come from the settings' list (no second list to forget a
    new topic in): every topic setting, its default under "callstt", renamed under the prefix."""
    from dataclasses import fields

    from callstt.streams.settings import prefixed_topics

    topic_fields = [f for f in fields(Settings) if f.name.endswith("_topic")]
    assert all(f.default.startswith("callstt.") for f in topic_fields)
    topics = prefixed_topics("w1")
    assert set(topics) == {f.name for f in topic_fields} and len(topics) >= 8
    assert topics["audio_topic"] == ("CALLSTT_AUDIO_TOPIC", "w1.audio")
    assert Settings.from_env(dict(topics.values())).call_settings_topic == "w1.call-settings"
