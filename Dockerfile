# cacheback proxy: an OpenAI- and Anthropic-compatible caching server.
#
#   docker build -t cacheback/proxy .
#   docker run -e OPENAI_API_KEY=sk-... -p 8080:8080 cacheback/proxy
#
# The cache lives in /data (a volume): mount it to keep entries across containers.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# hnswlib is built from source: it needs a C++ compiler (only in this stage).
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so that code changes do not rebuild them.
COPY pyproject.toml README.md ./
COPY cacheback ./cacheback
RUN pip install ".[proxy,postgres]"

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
