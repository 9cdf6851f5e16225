"""callstt's stream processing: the pipeline core (core/), the worker runtime (worker/), the client
library (client/), replay, the benchmark (bench/), the settings object and the command line.
See docs/architecture.md."""
