"""Speech recognition: the model store, the transcription backends, routing, batching, language ID."""
