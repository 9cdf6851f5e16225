"""The root of the project's own errors.

`CallsttError` is the base of every exception class this project defines, in every package
(schemas, models, streams, scripts). Catch `CallsttError` to catch them all, and nothing
raised by a library underneath. Each subclass also keeps the built-in base it always had
(`BadChunk` and `DecodeError` are still `ValueError`s, `ModelFileError` is still a
`RuntimeError`, ...), so existing `except ValueError` code keeps working, and the
bad-input reasons some of them carry (`BadChunk.reason`, `DecodeError.reason`: the
dead-letter header codes) are kept exactly as they are.

It lives in schemas/ because that package is the bottom of the dependency order
(schemas <- models <- streams): every package may import it, and it imports nothing.
"""

from __future__ import annotations


class CallsttError(Exception):
    """One of the project's own errors; catch it to catch them all."""
