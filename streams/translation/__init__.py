"""The translation agent: final transcripts in, Translation events out (streams/translation/core.py
for the logic, streams/translation/app.py for the Faust wiring)."""
