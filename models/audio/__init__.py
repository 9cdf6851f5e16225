"""A call's audio before the model: decoding, voice activity, endpoints, chunk order."""
