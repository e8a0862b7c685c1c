"""Benchmarks of sidecar-supervisor, measured side by side with today's workarounds.

``python -m benchmarks`` runs every figure and writes ``benchmarks/results/``;
``--quick`` takes a few samples of each (the CI smoke test). See README.md.
"""
