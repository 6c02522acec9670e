"""Helpers for tests, examples and benchmarks: tiny offline checkpoints and HF references.

Importing this package needs torch, transformers and tokenizers; the rest of octavo does not.
"""
