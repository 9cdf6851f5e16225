"""Endpointing: where a stream's utterances start and end, from its VAD probabilities.

This module owns the per-stream utterance state machine and nothing else: it sees one
speech probability per 32 ms VAD window (window k covers samples [512 k, 512 k + 512)
of the stream's 16 kHz audio) and answers with `Cut`s, sample ranges of the stream to
transcribe. It never holds audio; its state is a handful of integers, so it lives in a
changelog table next to the VAD state.

How the caller uses it, per stream and per decoded chunk:

    probabilities, vad_state = vad.process(samples16k, vad_state)
    cuts, state = endpointer.feed(state, probabilities)
    for cut in cuts:                       # zero or more, in stream order
        transcribe(buffer[cut.start_sample:cut.end_sample])   # offsets are absolute in the stream
    drop buffered audio before endpointer.keep_from_sample(state)

and on end of stream or when the stream has been idle too long:

    cuts, state = endpointer.flush(state, "end_of_stream" or "idle", audio_end=total_samples)

The caller's buffer must reach back to `keep_from_sample(state)` after every call:
the open utterance's start, or `pad_ms` before the current position when none is open
(so a starting utterance can include the audio just before its first voiced window).

Decisions:
- an utterance opens at its first voiced window (probability >= speech_threshold),
  starting pad_ms earlier, but never before the end of the previous cut;
- it ends after min_silence_ms of unvoiced windows, pad_ms after its last voiced window;
- when it reaches max_utterance_ms it is cut at its quietest window (the lowest
  probability in its last third), in that window's middle; the rest of it carries on as
  the next utterance, or is dropped if it holds no voiced window;
- utterances with less than min_speech_ms of voiced windows are dropped (clicks, coughs,
  noise bursts never reach the model): their audio produces no Cut, keep_from moves on;
- with speculate_ms set (shorter than min_silence_ms), an open utterance whose silence reaches
  speculate_ms also yields a *speculative* Cut (`Cut.speculative`): the utterance as it would
  be cut if no speech came back, so the model can start early. It changes no state; the
  final Cut follows at min_silence_ms, with the same start and `speech_end_sample` when no
  speech came back in between (`Cut.same_speech`), which is how the caller knows the
  speculative result is the final one;
- with interim_ms set, an open utterance also yields an *interim* Cut (`Cut.interim`) when its
  voiced time reaches a third of interim_ms (the first words early) and then each multiple of
  interim_ms: the utterance so far, for a hypothesis shown while the speaker is still talking
  (streams/core/interims.py). Like a speculative cut it changes no state; its number
  (`Cut.revision`) follows from the voiced time, so it comes out the same after a restart.
"""

from __future__ import annotations

import math
import struct
from dataclasses import astuple, dataclass, replace

from callstt.models.audio.decoding import SAMPLE_RATE

WINDOW_SAMPLES = 512  # one Silero window at 16 kHz
SAMPLES_PER_MS = SAMPLE_RATE // 1000
WINDOW_MS = WINDOW_SAMPLES / SAMPLES_PER_MS  # 32 ms
# Where a max-length cut may fall: in the last third of the utterance, so the piece sent keeps
# at least two thirds of the maximum length and the carried rest stays short.
CUT_SEARCH_FRACTION = 1 / 3
CUT_REASONS = ("silence", "max_length", "end_of_stream", "idle")
INTERIM = "interim"  # the reason of an interim cut: the utterance is still open


@dataclass(frozen=True)
class EndpointConfig:
    min_silence_ms: int = 600  # unvoiced time that ends an utterance
    max_utterance_ms: int = 15000  # longest utterance sent to the model
    speech_threshold: float = 0.5  # a window is voiced when its probability is at least this
    min_speech_ms: int = 250  # utterances with less voiced time than this are dropped
    # Audio kept before the first and after the last voiced window: 400 ms catches soft onsets the
    # VAD hears late, and on real speech (../shared/speech, English, one at a time) gave the
    # whole-clip WER (0.053) where 200 ms gave 0.063.
    pad_ms: int = 400
    # Trailing silence at which the model may start on the utterance before its end is sure
    # (0: never). Below pad_ms the speculative audio ends speculate_ms after the last voiced
    # window instead of pad_ms: only silence is missing.
    speculate_ms: int = 0
    # Voiced time between interim cuts of an open utterance (0: none).
    interim_ms: int = 0

    def __post_init__(self) -> None:
        if self.max_utterance_ms < 1000 or self.min_silence_ms <= 0 or self.pad_ms < 0 or self.speculate_ms < 0 \
                or self.interim_ms < 0:
            raise ValueError(f"unusable endpointing settings: {self}")


@dataclass(frozen=True)
class Cut:
    """Stream samples [start_sample, end_sample) at 16 kHz form one utterance to transcribe."""

    start_sample: int
    end_sample: int
    reason: str  # one of CUT_REASONS, or INTERIM
    speech_ms: int  # voiced time inside it (a multiple of 32 ms)
    speech_end_sample: int = 0  # end of its last voiced window
    speculative: bool = False  # the end is not sure yet: speech may come back (see the module doc)
    revision: int = 0  # an interim cut's number within its utterance (1, 2, ...); 0 for any other cut

    @property
    def interim(self) -> bool:
        return self.revision > 0

    def same_speech(self, other: "Cut") -> bool:
        """Both cuts hold the same speech (a speculative cut and the final one it foresaw)."""
        return (self.start_sample, self.speech_end_sample, self.speech_ms) == \
            (other.start_sample, other.speech_end_sample, other.speech_ms)

    @property
    def start_s(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / SAMPLE_RATE


@dataclass(frozen=True)
class EndpointState:
    """A stream's endpointing state: counts and sample offsets only, never audio."""

    windows: int = 0  # VAD windows seen: the current position is windows * 512
    floor: int = 0  # end of the last cut (sent or dropped): no utterance starts before it
    start: int = -1  # start sample of the open utterance; -1 when none is open
    voiced: int = 0  # voiced windows in the open utterance
    last_voiced: int = -1  # index of the open utterance's last voiced window
    silence_run: int = 0  # unvoiced windows since then
    quiet_window: int = -1  # lowest-probability window of the cut-search region so far (-1: none yet)
    quiet_probability: float = 2.0
    voiced_after_quiet: int = 0  # voiced windows after quiet_window (what a max-length cut carries over)
    sent: int = 0  # utterances cut so far, for metrics
    dropped: int = 0  # utterances dropped as too short, for metrics

    _FORMAT = struct.Struct("<BqqqqqqqdqQQ")
    _VERSION = 1

    @property
    def is_open(self) -> bool:
        return self.start >= 0

    @property
    def speech_end(self) -> int:
        """The stream sample just after the open utterance's last voiced window."""
        return (self.last_voiced + 1) * WINDOW_SAMPLES

    @property
    def position(self) -> int:
        """The stream sample just after the last window seen."""
        return self.windows * WINDOW_SAMPLES

    def to_bytes(self) -> bytes:
        return self._FORMAT.pack(self._VERSION, *astuple(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> "EndpointState":
        if len(data) != cls._FORMAT.size or data[0] != cls._VERSION:
            raise ValueError(f"not a version-{cls._VERSION} endpointing state ({len(data)} bytes)")
        return cls(*cls._FORMAT.unpack(data)[1:])


class Endpointer:
    """The utterance state machine for one EndpointConfig; pure, so one instance serves every stream."""

    def __init__(self, config: EndpointConfig | None = None) -> None:
        self.config = config = config or EndpointConfig()
        self.pad = config.pad_ms * SAMPLES_PER_MS
        self.min_silence_windows = math.ceil(config.min_silence_ms / WINDOW_MS)
        self.max_samples = config.max_utterance_ms * SAMPLES_PER_MS
        self.search_samples = int(self.max_samples * CUT_SEARCH_FRACTION)
        speculate_windows = math.ceil(config.speculate_ms / WINDOW_MS)
        # Speculation only makes sense before the utterance would end anyway.
        self.speculate_windows = speculate_windows if 0 < speculate_windows < self.min_silence_windows else 0
        self.interim_windows = math.ceil(config.interim_ms / WINDOW_MS)
        # The first words early: on real-time calls, a first interim at half the interval arrived
        # 1.5 s after speech started at p95 (callstt bench, K=1), a third brings it under.
        self.first_interim_windows = self.interim_windows // 3  # 0: the first comes at interim_windows

    def keep_from_sample(self, state: EndpointState) -> int:
        """The earliest stream sample the caller must still hold; audio before it is never cut again."""
        if state.is_open:
            return state.start
        return max(state.floor, state.position - self.pad)

    def feed(self, state: EndpointState, probabilities) -> tuple[list[Cut], EndpointState]:
        """Consume the next windows' speech probabilities; returns the cuts they complete and the new state."""
        cuts: list[Cut] = []
        s = state
        for probability in probabilities:
            s, cut = self._window(s, float(probability))
            if cut is not None:
                cuts.append(cut)
        return cuts, s

    def flush(self, state: EndpointState, reason: str = "end_of_stream",
              audio_end: int | None = None) -> tuple[list[Cut], EndpointState]:
        """Close the open utterance now (end of stream, or a stream idle too long).

        `audio_end` is how far the caller's audio reaches (the stream's decoded sample
        count); it may pass the last whole window, whose remainder the VAD never scored.
        """
        if reason not in ("end_of_stream", "idle"):
            raise ValueError(f"flush reason must be 'end_of_stream' or 'idle', not {reason!r}")
        if not state.is_open:
            return [], state
        audio_end = state.position if audio_end is None else max(audio_end, state.position)
        end = min(state.speech_end + self.pad, audio_end)
        closed, cut = self._close(state, end, reason)
        return ([cut] if cut else []), closed

    # --- one window ------------------------------------------------------------------------

    def _window(self, s: EndpointState, probability: float) -> tuple[EndpointState, Cut | None]:
        index = s.windows
        window_start = index * WINDOW_SAMPLES
        voiced = probability >= self.config.speech_threshold
        s = replace(s, windows=index + 1)
        if not s.is_open:
            if not voiced:
                return s, None
            return replace(s, start=max(s.floor, window_start - self.pad), voiced=1, last_voiced=index,
                           silence_run=0, quiet_window=-1, quiet_probability=2.0, voiced_after_quiet=0), None

        if voiced:
            s = replace(s, voiced=s.voiced + 1, last_voiced=index, silence_run=0,
                        voiced_after_quiet=s.voiced_after_quiet + 1)
        else:
            s = replace(s, silence_run=s.silence_run + 1)
        in_search = (s.start + self.max_samples - self.search_samples <= window_start
                     and window_start + WINDOW_SAMPLES // 2 <= s.start + self.max_samples)
        if in_search and probability < s.quiet_probability:
            # A cut in this window's middle keeps the piece within max_utterance_ms. Ties keep the
            # earlier window: the cut lands at the start of a flat pause.
            s = replace(s, quiet_window=index, quiet_probability=probability, voiced_after_quiet=0)

        if s.silence_run >= self.min_silence_windows:
            end = min(s.speech_end + self.pad, s.position)
            return self._close(s, end, "silence")
        if s.position - s.start >= self.max_samples:
            return self._cut_at_quietest(s)
        if self.speculate_windows and s.silence_run == self.speculate_windows \
                and int(s.voiced * WINDOW_MS) >= self.config.min_speech_ms:
            return s, self._speculative_cut(s)
        revision = self._interim_revision(s.voiced) if voiced and self.interim_windows else 0
        if revision and int(s.voiced * WINDOW_MS) >= self.config.min_speech_ms:
            return s, Cut(s.start, s.position, INTERIM, int(s.voiced * WINDOW_MS), s.speech_end, revision=revision)
        return s, None

    def _interim_revision(self, voiced: int) -> int:
        """The interim due at this many voiced windows (0: none): revision 1 at a third of the interval,
        so the first words show early, then 2, 3, ... at each whole interval."""
        if voiced == self.first_interim_windows:
            return 1
        if voiced % self.interim_windows == 0:
            return voiced // self.interim_windows + (1 if self.first_interim_windows else 0)
        return 0

    def _speculative_cut(self, s: EndpointState) -> Cut:
        """The cut `_close` would make if no speech came back (its audio ends here at the latest)."""
        return Cut(s.start, min(s.speech_end + self.pad, s.position), "silence", int(s.voiced * WINDOW_MS),
                   s.speech_end, speculative=True)

    def _cut_at_quietest(self, s: EndpointState) -> tuple[EndpointState, Cut | None]:
        end = s.quiet_window * WINDOW_SAMPLES + WINDOW_SAMPLES // 2
        carried = s.voiced_after_quiet
        closed, cut = self._close(replace(s, voiced=s.voiced - carried), end, "max_length")
        if carried == 0:  # nothing voiced after the cut: no utterance is open any more
            return closed, cut
        # The rest goes on as an utterance of its own, starting exactly where the cut ended.
        return replace(closed, start=end, voiced=carried, last_voiced=s.last_voiced,
                       silence_run=s.silence_run), cut

    def _close(self, s: EndpointState, end: int, reason: str) -> tuple[EndpointState, Cut | None]:
        """End the open utterance at `end`: a Cut if it has enough voiced time, else a drop."""
        speech_ms = int(s.voiced * WINDOW_MS)
        keep = speech_ms >= self.config.min_speech_ms
        closed = replace(s, floor=max(s.floor, end), start=-1, voiced=0, last_voiced=-1, silence_run=0,
                         quiet_window=-1, quiet_probability=2.0, voiced_after_quiet=0,
                         sent=s.sent + keep, dropped=s.dropped + (not keep))
        speech_end = min(s.speech_end, end)  # a max-length cut may fall in speech
        return closed, (Cut(s.start, end, reason, speech_ms, speech_end) if keep else None)
