"""A synthetic corpus of what a call sends the model besides speech, and of short real answers.

Whisper invents text on audio without speech ("Thank you.", "Thanks for watching!",
subtitle credits), loops on noise and repeats itself. models/text/guard.py drops such text;
this corpus, synthesised here from numpy and espeak-ng (models/voices/synth.py) with fixed
seeds, is what it is measured and tested on (tests/integration/test_nonspeech_guard.py,
`models.text.guard.measure_guard`). No recordings, no downloads: every clip is the same on
every machine (espeak-ng's own output aside).

Every generator returns 2 to 8 s of mono float32 audio at models.audio.decoding.SAMPLE_RATE.

- NON_SPEECH: audio that holds no words, so every transcript of it is invented:
  silence, comfort noise, white and pink noise, hold music (chords and a melody),
  DTMF key presses, a dial tone, breathing; and speech 30 dB under noise, which no
  listener (and no model) can make out, so it counts as non-speech unless the model
  does get its words (see `BURIED_SENTENCE`).
- SHORT_ANSWERS: one-word and two-word answers ("Yes.", "No.", "Thank you.", ...)
  spoken by espeak-ng with a little silence around, as the endpointer cuts them: the
  guard must keep every one, "Thank you." and "Bye." included, although those are also
  Whisper's favourite inventions.
- HARD_SPEECH: speech the guard must keep although it is hard to hear. Cross-talk: two
  voices saying different sentences at the same time at a similar level; that IS speech
  (whatever the model makes of the mix, the words it gets right are real words). And a
  sentence at 0 dB in the same pink noise as the buried one: audible, the VAD finds it.

`telephone(audio)` gives any clip as a phone line delivers it: 300-3400 Hz, 8 kHz,
G.711 mu-law, back at 16 kHz through the project's own resampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from callstt.models.audio.decoding import MULAW_TABLE, SAMPLE_RATE, ResampleState, resample
from callstt.models.voices.synth import synthesize

SEED = 20240611
CLIP_S = 4.0  # the length of the stationary clips (noise, tones)


def _rng(name: str) -> np.random.Generator:
    """One fixed random stream per clip, so clips stay the same whatever else is generated first."""
    return np.random.default_rng([SEED, sum(ord(c) * 31 ** i for i, c in enumerate(name)) % 2**32])


def _samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0


def at_level(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """`audio` scaled to an RMS of `dbfs` (dB relative to a full-scale square wave)."""
    rms = _rms(audio)
    return (audio * (10 ** (dbfs / 20) / rms if rms else 0.0)).astype(np.float32)


def _fade(audio: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    """Short raised-cosine fades at both ends (no clicks, which would be broadband bursts)."""
    n = min(_samples(seconds), len(audio) // 2)
    if n:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, n))
        audio = audio.copy()
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def _tone(frequencies, seconds: float, amplitudes=None) -> np.ndarray:
    t = np.arange(_samples(seconds)) / SAMPLE_RATE
    amplitudes = amplitudes if amplitudes is not None else [1.0] * len(frequencies)
    return sum(a * np.sin(2 * math.pi * f * t) for f, a in zip(frequencies, amplitudes)).astype(np.float32)


def _shaped_noise(name: str, seconds: float, low_hz: float = 0.0, high_hz: float | None = None,
                  slope: float = 0.0) -> np.ndarray:
    """Gaussian noise, band-limited to [low_hz, high_hz] and with a power spectrum ~ f**slope
    (0 white, -1 pink), shaped in the frequency domain."""
    n = _samples(seconds)
    spectrum = np.fft.rfft(_rng(name).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    gain = np.where((f >= low_hz) & (f <= (high_hz or SAMPLE_RATE / 2)), 1.0, 0.0)
    if slope:
        gain = gain * np.power(np.maximum(f, 20.0), slope / 2)
    return np.fft.irfft(spectrum * gain, n).astype(np.float32)


def _pad(audio: np.ndarray, before_s: float, after_s: float) -> np.ndarray:
    return np.concatenate([np.zeros(_samples(before_s), np.float32), audio.astype(np.float32),
                           np.zeros(_samples(after_s), np.float32)])


# --- non-speech -----------------------------------------------------------------------------------

def silence(seconds: float = CLIP_S) -> np.ndarray:
    """Digital silence: a muted line."""
    return np.zeros(_samples(seconds), dtype=np.float32)


def comfort_noise(seconds: float = CLIP_S) -> np.ndarray:
    """The faint hiss a phone line or a codec's comfort noise leaves in a pause (-60 dBFS)."""
    return at_level(_shaped_noise("comfort", seconds, 100, 3800), -60)


def white_noise(seconds: float = CLIP_S) -> np.ndarray:
    return at_level(_shaped_noise("white", seconds), -30)


def pink_noise(seconds: float = CLIP_S) -> np.ndarray:
    """1/f noise, the spectrum of much room, street and fan noise."""
    return at_level(_shaped_noise("pink", seconds, 20, None, slope=-1.0), -30)


_NOTE = {"C4": 261.63, "D4": 293.66, "E4": 329.63, "F4": 349.23, "G4": 392.00, "A4": 440.00,
         "B4": 493.88, "C5": 523.25, "D5": 587.33, "E5": 659.25, "G3": 196.00, "A3": 220.00,
         "F3": 174.61, "C3": 130.81, "E3": 164.81}


def _instrument(frequency: float, seconds: float, harmonics: int = 6, decay: float = 3.0) -> np.ndarray:
    """A plucked, organ-like note: a few harmonics (1/k) under an attack-decay envelope."""
    note = _tone([frequency * k for k in range(1, harmonics + 1)], seconds, [1 / k for k in range(1, harmonics + 1)])
    t = np.arange(len(note)) / SAMPLE_RATE
    envelope = np.minimum(t / 0.02, 1.0) * np.exp(-decay * t)
    return _fade(note * envelope.astype(np.float32), 0.02)


def hold_music(seconds: float = 6.0) -> np.ndarray:
    """Four bars of I-V-vi-IV chords with a melody over them, as a hold queue loops (-22 dBFS)."""
    chords = [("C3", "E4", "G4"), ("G3", "B4", "D5"), ("A3", "C5", "E5"), ("F3", "A4", "C5")]
    melody = ["E5", "D5", "C5", "D5", "E5", "E5", "E5", "D5", "D5", "D5", "E5", "G4",
              "E5", "D5", "C5", "D5", "E5", "E5", "E5", "C5", "D5", "D5", "E5", "D5"]
    out = np.zeros(_samples(seconds), dtype=np.float32)
    bar = seconds / len(chords)
    for i, chord in enumerate(chords):
        start = _samples(i * bar)
        for name in chord:
            note = 0.5 * _instrument(_NOTE[name], bar, decay=1.0)
            out[start:start + len(note)] += note[:len(out) - start]
    step = seconds / len(melody)
    for i, name in enumerate(melody):
        start = _samples(i * step)
        note = _instrument(_NOTE[name], step, harmonics=3, decay=4.0)
        out[start:start + len(note)] += note[:len(out) - start]
    return at_level(out, -22)


# The DTMF keypad: (low group Hz, high group Hz) per key (ITU-T Q.23).
DTMF = {key: (low, high) for low, row in zip((697, 770, 852, 941), ("123A", "456B", "789C", "*0#D"))
        for high, key in zip((1209, 1336, 1477, 1633), row)}


def dtmf(keys: str = "4155550199#", tone_s: float = 0.12, gap_s: float = 0.16, lead_s: float = 0.4) -> np.ndarray:
    """Key presses of a phone number: each key its two DTMF tones, with gaps (about 3.5 s)."""
    pieces = [silence(lead_s)]
    for key in keys:
        pieces += [_fade(0.5 * _tone(DTMF[key], tone_s)), silence(gap_s)]
    pieces.append(silence(lead_s))
    return at_level(np.concatenate(pieces), -20)


def dial_tone(seconds: float = CLIP_S) -> np.ndarray:
    """The North American dial tone: 350 + 440 Hz, continuous."""
    return at_level(_fade(_tone((350, 440), seconds)), -20)


def breathing(seconds: float = 6.0, breath_s: float = 2.0) -> np.ndarray:
    """Breaths into a headset microphone: noise band-limited to 200-2500 Hz whose level
    swells and fades over each breath (inhale, exhale, a short pause)."""
    noise = _shaped_noise("breathing", seconds, 200, 2500, slope=-0.5)
    t = np.arange(len(noise)) / SAMPLE_RATE
    phase = (t % breath_s) / breath_s
    # inhale over the first 40% of a breath, exhale (louder) over the next 45%, then a pause.
    inhale = np.where(phase < 0.4, np.sin(math.pi * phase / 0.4) ** 2 * 0.6, 0.0)
    exhale = np.where((phase >= 0.4) & (phase < 0.85), np.sin(math.pi * (phase - 0.4) / 0.45) ** 2, 0.0)
    return at_level(noise * (inhale + exhale).astype(np.float32), -32)


# The sentence buried under noise, and its level relative to the noise (a signal-to-noise ratio in dB).
BURIED_SENTENCE = "Please call me back tomorrow morning."
BURIED_SNR_DB = -30.0


def speech_under_noise(text: str = BURIED_SENTENCE, snr_db: float = BURIED_SNR_DB,
                       noise_dbfs: float = -25.0) -> np.ndarray:
    """`text` spoken snr_db (RMS over the spoken part) below pink noise at noise_dbfs.

    At -30 dB the speech is inaudible: this is a noisy line with nothing to say, and only
    counts as speech if the model gets the sentence's words (which it should not)."""
    speech = _pad(synthesize(text), 0.5, 0.5)
    voiced = np.abs(speech) > 0.01 * np.max(np.abs(speech))
    speech_rms = _rms(speech[voiced])
    noise = at_level(_shaped_noise("buried", len(speech) / SAMPLE_RATE, 20, None, slope=-1.0), noise_dbfs)
    gain = 10 ** ((noise_dbfs + snr_db) / 20) / speech_rms
    return (noise + gain * speech).astype(np.float32)


NON_SPEECH: dict[str, Callable[[], np.ndarray]] = {
    "silence": silence,
    "comfort_noise": comfort_noise,
    "white_noise": white_noise,
    "pink_noise": pink_noise,
    "hold_music": hold_music,
    "dtmf": dtmf,
    "dial_tone": dial_tone,
    "breathing": breathing,
    "speech_-30dB_under_noise": speech_under_noise,
}


# --- speech that must be kept ----------------------------------------------------------------------

def short_answer(text: str, before_s: float = 0.4, total_s: float = 2.0, language: str = "en") -> np.ndarray:
    """`text` spoken by espeak-ng, `before_s` of silence before it and silence after it up to
    `total_s` (at least 0.3 s): more than the endpointer leaves around an utterance (its pad_ms),
    as an utterance flushed at the end of a stream or cut by a long silence setting has."""
    speech = synthesize(text, language)
    return _pad(speech, before_s, max(0.3, total_s - before_s - len(speech) / SAMPLE_RATE))


# Real answers heard on calls; several are also what Whisper invents on silence.
SHORT_ANSWER_TEXTS = ("Yes.", "No.", "Thank you.", "Okay.", "Sure.", "Goodbye.", "Thanks.", "Bye.",
                      "Hello?", "Right.", "Exactly.", "Of course.")
SHORT_ANSWERS: dict[str, Callable[[], np.ndarray]] = {
    text: (lambda text=text: short_answer(text)) for text in SHORT_ANSWER_TEXTS}

# Two speakers at once: a US male voice and a British female voice (espeak-ng variants), the
# second starting 0.6 s later and 3 dB quieter (RMS over their spoken parts).
CROSS_TALK_SENTENCES = ("I need to change my delivery address.", "We will send the invoice by email.")
CROSS_TALK_VOICES = ("en-us", "en-gb+f3")


def cross_talk(sentences: tuple[str, str] = CROSS_TALK_SENTENCES, voices: tuple[str, str] = CROSS_TALK_VOICES,
               offset_s: float = 0.6, level_db: float = -3.0) -> np.ndarray:
    first, second = (synthesize(text, voice) for text, voice in zip(sentences, voices))
    second = second * (10 ** (level_db / 20) * _rms(first) / _rms(second))
    out = np.zeros(max(len(first), _samples(offset_s) + len(second)), dtype=np.float32)
    out[:len(first)] += first
    out[_samples(offset_s):_samples(offset_s) + len(second)] += second
    return _pad(out / max(1.0, float(np.max(np.abs(out)))), 0.3, 0.3)


def speech_in_noise() -> np.ndarray:
    """The buried sentence, audible: at the same level as the noise (0 dB)."""
    return speech_under_noise(BURIED_SENTENCE, snr_db=0.0)


HARD_SPEECH: dict[str, Callable[[], np.ndarray]] = {"cross_talk": cross_talk, "speech_0dB_in_noise": speech_in_noise}
HARD_SPEECH_REFERENCES = {"cross_talk": CROSS_TALK_SENTENCES, "speech_0dB_in_noise": (BURIED_SENTENCE,)}


# --- a phone line -----------------------------------------------------------------------------------

_MULAW_SORTED = np.sort(MULAW_TABLE)


def telephone(audio: np.ndarray) -> np.ndarray:
    """`audio` as a phone line delivers it: 300-3400 Hz, 8 kHz, G.711 mu-law, back at 16 kHz.

    Band-limited in the frequency domain (so taking every other sample aliases nothing),
    each sample mapped to the nearest mu-law code of models.audio.decoding's table, then brought
    back to 16 kHz with models.audio.decoding's streaming resampler (as the worker does)."""
    n = len(audio)
    spectrum = np.fft.rfft(np.asarray(audio, dtype=np.float64))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    narrow = np.fft.irfft(np.where((f >= 300) & (f <= 3400), spectrum, 0), n)[::2]
    # nearest of the 256 mu-law values: this is encoding and decoding in one step
    index = np.clip(np.searchsorted(_MULAW_SORTED, narrow), 1, len(_MULAW_SORTED) - 1)
    lower, upper = _MULAW_SORTED[index - 1], _MULAW_SORTED[index]
    coded = np.where(narrow - lower < upper - narrow, lower, upper).astype(np.float32)
    wide, _ = resample(coded, ResampleState.fresh(8000))
    return wide[:n]


# --- the whole corpus -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clip:
    name: str
    kind: str  # "non_speech", "short_answer" or "hard_speech"
    make: Callable[[], np.ndarray]
    references: tuple[str, ...] = ()  # what is really said ("" for non-speech; the buried sentence)


def corpus(phone_line: bool = False) -> list[Clip]:
    """Every clip, non-speech first; with `phone_line`, each also as a phone line delivers it."""
    clips = [Clip(name, "non_speech", make, (BURIED_SENTENCE,) if make is speech_under_noise else ())
             for name, make in NON_SPEECH.items()]
    clips += [Clip(text, "short_answer", make, (text,)) for text, make in SHORT_ANSWERS.items()]
    clips += [Clip(name, "hard_speech", make, HARD_SPEECH_REFERENCES[name]) for name, make in HARD_SPEECH.items()]
    if phone_line:
        clips += [Clip(f"{clip.name} (phone)", clip.kind, lambda make=clip.make: telephone(make()), clip.references)
                  for clip in list(clips)]
    return clips
