"""Benchmarks: one module per benchmark, each timing the project against baselines in one process.

Run ``python -m benchmarks --list``, ``python -m benchmarks <name> [--rows N]`` or
``python -m benchmarks all``; helpers live in :mod:`benchmarks.harness`.
"""
