"""The stages of a run (see ``benchmark/runner.py``): plan -> references -> cell -> result -> sinks."""
