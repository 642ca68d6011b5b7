"""The runtime: types, ports, settings, errors, the pipeline and the engine."""
