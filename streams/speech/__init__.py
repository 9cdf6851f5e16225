"""The speech agent: Translation events in, synthesized speech out as AudioChunk events
(streams/speech/core.py for the logic, streams/speech/app.py for the Faust wiring)."""
