#!/usr/bin/env bash
# Build the Docker image with buildah and run it against the fake provider
# (tests/test_image.py: HEALTHCHECK, a hit on the repeat, a SIGTERM drain).
# Run it before each change to the Dockerfile. Needs buildah and a python:3.11-slim
# base image in buildah's storage; a first build takes a few minutes, later ones reuse
# the cached layers.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHEBACK_TEST_IMAGE=1 exec python -m pytest -m container -p no:cacheprovider tests/test_image.py "$@"
