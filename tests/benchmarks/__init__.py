"""Side-by-side fan-out benchmark (a tool, not a test): ``python -m tests.benchmarks.fanout``."""
