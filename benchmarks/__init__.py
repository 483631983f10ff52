"""Throughput, CPU and memory of es-inference against the limit and the alternatives.

Run ``python -m benchmarks`` (``./run.sh bench``) for the full table or
``python -m benchmarks --quick`` to check the machinery in seconds.
"""
