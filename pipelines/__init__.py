"""The user's commands (``flowpaint <command>``, ``python -m pipelines.<module>``): train,
evaluate, calibrate, score, inpaint, ... Each imports only the library; lab tooling
(benchmarks, GPU runs) lives in ``benchmarks``."""
