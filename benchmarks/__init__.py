"""Lab tooling, apart from the user's commands in ``pipelines``: benchmarks, GPU runs, result
tables. Run from a checkout as ``python -m benchmarks.<module>`` (the package is not installed).
Imports only the library (``inpaint_app``), never a pipeline; a user command it needs runs as
its own process (``python -m pipelines.train``). The folder also holds the result files the
modules write (``*.md``, ``*.json``), the real-world corpus (``realworld/``) and one-off
experiment scripts (``experiments/``, run as files)."""
