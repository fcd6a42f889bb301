# Tollgate: a slim, non-root image. The policy bundle and the data directory (usage ledger,
# spool, last good bundle) are volumes:
#   docker build -t tollgate .
#   docker run -p 8080:8080 -v "$PWD/policies:/policies:ro" -v tollgate-data:/data tollgate
# Settings come from TOLLGATE_* variables (docs/configuration.md), e.g. TOLLGATE_WORKERS=2.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
RUN python -m venv /opt/tollgate && /opt/tollgate/bin/pip install .

FROM python:3.11-slim
# git: the bundle's revision is its commit when the mounted directory is a work tree (git-sync)
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tollgate \
    && mkdir -p /data /policies && chown tollgate /data
COPY --from=build /opt/tollgate /opt/tollgate
# the default bundle (a mock provider): replaced by mounting your own over /policies
COPY --chown=tollgate policies/ /policies/
ENV PATH=/opt/tollgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    TOLLGATE_HOST=0.0.0.0 \
    TOLLGATE_PORT=8080 \
    TOLLGATE_POLICIES=/policies \
    TOLLGATE_DATA_DIR=/data \
    TOLLGATE_SHUTDOWN_GRACE_S=30
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# /readyz answers 200 once a worker serves a compiled bundle; no curl in a slim image
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tollgate", "serve"]
