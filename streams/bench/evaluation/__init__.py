"""What the benchmark and the tests measure with: word error rate, the non-speech corpus and the
guard's report on it, the rare-word set. Not used by the worker or the agents."""
