# syntax=docker/dockerfile:1
# incidentbot container image.
#   docker build -t incidentbot:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
# Two stages: "build" installs the package and its pinned dependencies (pyproject.toml) into a
# virtualenv at /opt/venv; "runtime" copies only that virtualenv and the bundled playbooks, so no
# pip cache, build tooling or source tree reaches the final image. The sandbox (development
# fakes of Slack, Kubernetes and PagerDuty) is not copied: in the image `incidentbot sandbox`
# says so. The runtime runs as uid 10001 and writes only to /tmp, so it works with a read-only
# root filesystem (the Helm chart mounts an emptyDir at /tmp).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
# A regular (non-editable) install without the dev extras. Bytecode is compiled now because the
# root filesystem is read-only at run time; pip and setuptools are not needed at run time.
RUN /opt/venv/bin/pip install --compile . \
    && /opt/venv/bin/pip uninstall -y pip setuptools wheel \
    && /opt/venv/bin/incidentbot --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="incidentbot" \
      org.opencontainers.image.description="Async Slack bot for incident response: Alertmanager/PagerDuty in, incident channels, runbooks and approved Kubernetes remediation out." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN groupadd --system --gid 10001 incidentbot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin incidentbot
COPY --from=build /opt/venv /opt/venv
COPY playbooks /app/playbooks
WORKDIR /app
# HOME and MPLCONFIGDIR point into /tmp, the only writable path: matplotlib keeps its font cache
# there instead of $HOME/.config.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    PLAYBOOKS_DIR=/app/playbooks \
    HTTP_PORT=8080
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["incidentbot"]
CMD ["run"]
