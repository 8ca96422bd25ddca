"""Benchmark harness for the fvc-dagster pipeline stages (`make bench`)."""
