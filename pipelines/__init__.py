"""Command-line pipelines: train, evaluate, benchmark."""
