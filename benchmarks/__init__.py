"""Benchmarks of veo-async against the usual ways of driving the Veo API (see README.md)."""
