"""Streaming voice activity detection with Silero VAD (the ONNX file faster-whisper ships).

This module owns running Silero on a live stream: 16 kHz audio arrives in pieces of
any length, and each complete 32 ms window (512 samples) gets one speech probability.
Everything a stream needs between pieces is in `VadState` (the LSTM's h and c, the
64 samples of context the model sees before each window, and the < 512 samples not
yet making a whole window); it is a few kilobytes as bytes, so the pipeline keeps it
per stream in a changelog table. Processing a stream piece by piece gives exactly the
probabilities of processing it in one piece.

Window k of a stream covers samples [512 k, 512 k + 512) of its 16 kHz audio; the
endpointer counts windows to turn probabilities back into sample offsets.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
from faster_whisper.utils import get_assets_path

WINDOW_SAMPLES = 512  # Silero's window at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # samples of the previous window prepended to each window (as faster-whisper does)
STATE_SHAPE = (1, 1, 128)  # h and c of Silero v6's LSTM
# onnxruntime handles any number of windows in one run; bounding it bounds memory for huge inputs.
MAX_WINDOWS_PER_RUN = 4096


def default_model_path() -> Path:
    """silero_vad_v6.onnx inside the installed faster-whisper package."""
    return Path(get_assets_path()) / "silero_vad_v6.onnx"


@functools.lru_cache(maxsize=None)
def _session(path: str):
    """One onnxruntime session per model file for the whole process, shared by every stream."""
    options = onnxruntime.SessionOptions()
    # Silero is tiny (a window costs microseconds); more threads only add contention with the
    # speech model, which is where the CPU should go.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=options)


_STATE_HEADER = struct.Struct("<BH")  # version, leftover sample count
_STATE_VERSION = 1
_FIXED_FLOATS = 2 * 128 + CONTEXT_SAMPLES


@dataclass(frozen=True, eq=False)  # numpy fields: == would be ambiguous, so equality is identity
class VadState:
    """A stream's Silero state between two pieces of audio; immutable, `process` returns a new one."""

    h: np.ndarray = field(default_factory=lambda: np.zeros(STATE_SHAPE, dtype=np.float32))
    c: np.ndarray = field(default_factory=lambda: np.zeros(STATE_SHAPE, dtype=np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, dtype=np.float32))
    leftover: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # < 512 samples
    windows: int = 0  # windows processed so far: the next window starts at sample 512 * windows

    def to_bytes(self) -> bytes:
        floats = np.concatenate([self.h.ravel(), self.c.ravel(), self.context, self.leftover]).astype("<f4")
        return _STATE_HEADER.pack(_STATE_VERSION, len(self.leftover)) + struct.pack("<Q", self.windows) \
            + floats.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "VadState":
        version, leftover = _STATE_HEADER.unpack_from(data)
        offset = _STATE_HEADER.size + 8
        if version != _STATE_VERSION or len(data) != offset + 4 * (_FIXED_FLOATS + leftover):
            raise ValueError(f"not a version-{_STATE_VERSION} VAD state ({len(data)} bytes)")
        (windows,) = struct.unpack_from("<Q", data, _STATE_HEADER.size)
        floats = np.frombuffer(data, dtype="<f4", offset=offset).astype(np.float32)
        return cls(h=floats[:128].reshape(STATE_SHAPE), c=floats[128:256].reshape(STATE_SHAPE),
                   context=floats[256:_FIXED_FLOATS], leftover=floats[_FIXED_FLOATS:], windows=windows)


class StreamingVad:
    """Speech probabilities of 32 ms windows of a live 16 kHz stream; one instance serves all streams.

    `process` is pure: it reads the stream's state and returns a new one, and the shared
    onnxruntime session is safe to run from several threads at once.
    """

    def __init__(self, model_path: Path | None = None) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        # InferenceSession.run is thread-safe, so no lock: streams on several threads share it.
        self.session = _session(str(self.model_path))

    def process(self, frames16k: np.ndarray, state: VadState | None = None) -> tuple[np.ndarray, VadState]:
        """Probabilities (float32, one per completed window) for the next audio of a stream, and the new state.

        Samples that do not complete a window are kept in the state and lead the next call.
        """
        state = state or VadState()
        audio = np.concatenate([state.leftover, np.asarray(frames16k, dtype=np.float32).ravel()])
        count = len(audio) // WINDOW_SAMPLES
        if count == 0:
            return np.zeros(0, dtype=np.float32), VadState(state.h, state.c, state.context, audio, state.windows)
        windows = audio[:count * WINDOW_SAMPLES].reshape(count, WINDOW_SAMPLES)
        # Each window is fed with the last 64 samples of the one before it (for the first window of
        # this call, the context kept from the previous call).
        contexts = np.concatenate([state.context[None, :], windows[:-1, -CONTEXT_SAMPLES:]])
        inputs = np.concatenate([contexts, windows], axis=1)
        h, c = state.h, state.c
        # The model treats the rows of one run as consecutive windows, carrying h and c along them.
        outputs = []
        for first in range(0, count, MAX_WINDOWS_PER_RUN):
            probabilities, h, c = self.session.run(
                None, {"input": inputs[first:first + MAX_WINDOWS_PER_RUN], "h": h, "c": c})
            outputs.append(probabilities)
        new_state = VadState(h=h, c=c, context=windows[-1, -CONTEXT_SAMPLES:].copy(),
                             leftover=audio[count * WINDOW_SAMPLES:].copy(), windows=state.windows + count)
        return np.concatenate(outputs).astype(np.float32), new_state


@functools.lru_cache(maxsize=1)
def shared_vad() -> StreamingVad:
    """The process-wide StreamingVad on faster-whisper's model file."""
    return StreamingVad()
