"""The client library call platforms embed: publish audio, read transcripts, manage topics."""
