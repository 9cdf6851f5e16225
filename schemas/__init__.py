"""Avro schemas of the project's events and the codec that reads and writes them."""
