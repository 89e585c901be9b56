# Container image of infobip-voice-exporter.
#
#   docker build -t infobip-voice-exporter .
#   docker run -p 9877:9877 -e INFOBIP_BASE_URL -e INFOBIP_API_KEY infobip-voice-exporter
#
# The builder stage turns the source into a wheel and installs it, with its dependencies, into
# a virtual environment; the final stage takes that environment and the default configuration
# (deploy/docker/config.yaml), nothing else. Every dependency ships binary wheels for Linux, so
# neither stage needs a compiler.
# tests/test_dockerfile.py replays the builder's RUN steps in a scratch directory: keep every
# path in them relative to WORKDIR or spelled through an ENV variable.

FROM python:3.11-slim AS builder

ENV VIRTUAL_ENV=/opt/infobip-voice-exporter \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter

RUN python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" wheel --no-deps --wheel-dir dist . \
    && "$VIRTUAL_ENV/bin/pip" install dist/*.whl


FROM python:3.11-slim

ENV VIRTUAL_ENV=/opt/infobip-voice-exporter
ENV PATH="$VIRTUAL_ENV/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed numeric identity, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/infobip-voice-exporter --shell /usr/sbin/nologin exporter \
    && install --directory --owner 10001 --group 10001 --mode 0750 \
        /var/lib/infobip-voice-exporter

COPY --from=builder /opt/infobip-voice-exporter /opt/infobip-voice-exporter
COPY deploy/docker/config.yaml /etc/infobip-voice-exporter/config.yaml

USER 10001:10001
WORKDIR /var/lib/infobip-voice-exporter
EXPOSE 9877

# The slim image has no curl; the interpreter is already there. /healthz answers 200 while the
# poll loop lives, whatever the Infobip API does, so a failing API never marks the container
# unhealthy. A configuration that moves server.listen off port 9877, or serves TLS through
# server.web_config_file, needs its own `docker run --health-cmd`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9877/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["infobip-voice-exporter"]
CMD ["--config", "/etc/infobip-voice-exporter/config.yaml"]
