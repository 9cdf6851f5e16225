"""A call's vocabulary: the words the model should expect (hotwords) and preceding context
(initial prompt). Both go into Whisper's prompt (the "previous text" the decoder conditions
on), which biases it towards those spellings without forcing them.

    Vocabulary(hotwords=("Zyntra", "Kowalczyk"), initial_prompt="Support call about a Zyntra router.")
    .prompt_text() -> "Support call about a Zyntra router. Names and terms: Zyntra, Kowalczyk."

Both reach the model as one written prompt (`prompt_text`), not as faster-whisper's separate
`hotwords` option: on the project's rare-word set (streams/bench/evaluation/rare_words.py) the same words as a
written sentence gave the same or better recall, a lower WER, and, unlike a bare hotword
list, never leaked into silence ("Kowalczyk, Kowalczyk, ..." on 3 s of silence). The backend
caps the prompt's length so that prompt and output fit Whisper's 448-token decoder
(models/asr/faster_whisper_backend.py). Utterances share a packed window only with the same
vocabulary (models/asr/batching.py): one window has one prompt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Vocabulary:
    hotwords: tuple[str, ...] = ()
    initial_prompt: str = ""

    def __bool__(self) -> bool:
        return bool(self.hotwords or self.initial_prompt.strip())

    def prompt_text(self) -> str | None:
        """The prompt the model is given (None: no vocabulary): the initial prompt as a sentence,
        then the hotwords as a written list."""
        parts = []
        prompt = self.initial_prompt.strip()
        if prompt:
            parts.append(prompt if prompt[-1] in ".!?" else prompt + ".")
        words = [word.strip() for word in self.hotwords if word.strip()]
        if words:
            parts.append("Names and terms: " + ", ".join(words) + ".")
        return " ".join(parts) or None


NO_VOCABULARY = Vocabulary()
