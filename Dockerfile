# cacheback proxy: an OpenAI- and Anthropic-compatible caching server.
#
#   docker build -t cacheback/proxy .
#   (without a Docker engine: buildah bud --isolation chroot --format docker -t cacheback/proxy .;
#   tests/test_image.py builds and runs it that way)
#   docker run -e OPENAI_API_KEY=sk-... -p 8080:8080 cacheback/proxy
#
# The cache lives in /data (a volume): mount it to keep entries across containers.

FROM python:3.11-slim AS build
# HNSWLIB_NO_NATIVE: hnswlib's setup.py otherwise compiles with -march=native, tying the
# image to the build machine's CPU (an illegal instruction on an older one).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 HNSWLIB_NO_NATIVE=1
# hnswlib is built from source (PyPI has no wheel): the C++ compiler is only in this stage.
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# hnswlib first, as a wheel whose compile commands are checked: the build fails if
# -march=native (or -mtune=native) is in them. The compiler's own record of its flags is
# kept in the image (/opt/venv/hnswlib-compiler.txt) before the debug info is stripped.
RUN pip wheel -v --no-deps -w /wheels "hnswlib>=0.8,<0.9" > /tmp/hnswlib-build.log 2>&1 \
    || { tail -50 /tmp/hnswlib-build.log; exit 1; }; \
    grep -q -- "-O3" /tmp/hnswlib-build.log \
    && ! grep -q -- "=native" /tmp/hnswlib-build.log \
    && pip install /wheels/hnswlib-*.whl \
    && so=$(python -c "import hnswlib; print(hnswlib.__file__)") \
    && strings "$so" | grep "^GNU C" > /opt/venv/hnswlib-compiler.txt \
    && ! grep -q native /opt/venv/hnswlib-compiler.txt \
    && strip --strip-debug "$so"
# The dependencies, from pyproject.toml alone (an empty package and README stand in for
# the rest), so that a code or README change reinstalls only the project itself.
COPY pyproject.toml ./
RUN mkdir cacheback && touch cacheback/__init__.py README.md \
    && pip install ".[proxy,postgres]" && pip uninstall -y -q cacheback-ai && rm -rf cacheback build README.md
COPY README.md ./
COPY cacheback ./cacheback
# pip and setuptools are not needed at run time.
RUN pip install --no-deps . \
    && pip check \
    && pip uninstall -y -q setuptools \
    && rm -rf /opt/venv/lib/python3*/site-packages/pip /opt/venv/bin/pip*

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CACHEBACK_HOST=0.0.0.0 \
    CACHEBACK_PORT=8080 \
    CACHEBACK_CACHE_DIR=/data \
    CACHEBACK_SIMILARITY_THRESHOLD=0.92 \
    CACHEBACK_SYNTHESIS_MODE=off \
    CACHEBACK_TTL=86400 \
    CACHEBACK_GRACEFUL_TIMEOUT=8
# hnswlib's OpenMP runtime; nothing else from the compiler toolchain.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin cacheback \
    && mkdir -p /data && chown cacheback:cacheback /data
USER cacheback
VOLUME ["/data"]
EXPOSE 8080
# /health answers 200 only when the store and the embedder are loaded.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CACHEBACK_PORT', '8080'), timeout=4)"]
# Exec form: the proxy is PID 1 and gets SIGTERM itself (in-flight requests finish,
# the cache is flushed; CACHEBACK_GRACEFUL_TIMEOUT stays under docker stop's 10 s).
ENTRYPOINT ["cacheback-proxy"]
