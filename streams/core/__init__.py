"""The Faust-free pipeline core: chunk in, transcripts and state changes out."""
