"""``vigil bench``: speed ratios measured side by side, each paired with an equality guard.

See BENCHMARKING.md in the shared docs: pinned threads, warm-up, interleaved rounds, medians.
"""
