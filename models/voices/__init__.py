"""Speech synthesis: the speech agent's voices (espeak-ng, Piper) and espeak-ng speech for demos and tests."""
