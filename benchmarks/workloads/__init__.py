"""Stand-in processes the benchmarks run (each a script, started with ``python -S``)."""
