from __future__ import annotations

import pytest

from streams.settings import Settings, SettingsError


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
