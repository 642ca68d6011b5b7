"""The bottom layer: request and outcome types, ports, settings, errors, the job frame and
the pure decisions. It imports nothing else from cacheback."""
