"""`python -m callstt.streams.bench`: the same as `callstt bench`."""

from callstt.streams.bench.run import main

main()
