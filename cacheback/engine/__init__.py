"""The engine: assembles the stages into a pipeline and runs it (above ``stages`` and ``core``)."""
