"""`python -m streams.bench`: the same as `callstt bench`."""

from streams.bench.run import main

main()
