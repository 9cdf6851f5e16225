"""A call's vocabulary: the words the model should expect (hotwords) and preceding context
(initial prompt). Both go into Whisper's prompt (the "previous text" the decoder conditions
on), which biases it towards those spellings without forcing them.

    Vocabulary(hotwords=("Zyntra", "Kowalczyk"), initial_prompt="Support call about a Zyntra router.")

faster-whisper takes both directly (`hotwords=`, `initial_prompt=`); a backend without a
hotwords option gives the model `prompt_text()`. Utterances share a packed window only with
the same vocabulary (models/batching.py): one window has one prompt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Vocabulary:
    hotwords: tuple[str, ...] = ()
    initial_prompt: str = ""

    def __bool__(self) -> bool:
        return bool(self.hotwords or self.initial_prompt.strip())

    @property
    def hotword_text(self) -> str | None:
        """The hotwords as faster-whisper's `hotwords` string (None: none)."""
        return ", ".join(self.hotwords) if self.hotwords else None

    @property
    def prompt(self) -> str | None:
        return self.initial_prompt.strip() or None

    def prompt_text(self) -> str | None:
        """Everything as one prompt, for backends that only take a prompt."""
        text = " ".join(part for part in (self.prompt, self.hotword_text) if part)
        return text or None


NO_VOCABULARY = Vocabulary()
