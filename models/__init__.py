"""Speech models: the model store, transcription backends, language routing and VAD."""
