"""Benchmarks of syncplane, each figure beside a baseline measured in the same run.

``make bench`` runs ``python -m bench``; see ``bench/README.md``.
"""
