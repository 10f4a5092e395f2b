# overdue-notifier image: a virtualenv built in one stage, copied into a clean slim runtime that
# runs as an unprivileged user with nothing else installed (no compiler, no pip cache).
#
# Base: Debian bookworm slim with CPython 3.11.14, pinned by tag AND by the digest of its
# multi-architecture index, so a rebuild gets the same bytes. To move it, take the new digest
# from the registry (`docker buildx imagetools inspect python:3.11-slim-bookworm`) and change it
# here, in both stages' ARG only.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, exactly as locked: every package pinned and hash-checked, so two builds of
# one commit install the same bytes (`make lock` refreshes the lock; see docs/operations.md).
# This layer is reused while only the code changes. (Every locked package ships manylinux
# wheels, so no compiler is needed.)
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
# The project itself without resolving anything: its dependencies are the locked ones above.
COPY pyproject.toml README.md ./
COPY service ./service
# service/templates links to ../templates: the wheel copies them in (the package's defaults).
COPY templates ./templates
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
# OCI annotations (https://github.com/opencontainers/image-spec/blob/main/annotations.md). The
# build passes the commit and its time: docker build --build-arg REVISION=$(git rev-parse HEAD)
#   --build-arg CREATED=$(git log -1 --format=%cI) --build-arg VERSION=0.1.0 \
#   --build-arg SOURCE_URL=https://REPOSITORY .
# (the commit time, not the build time, so a rebuild of one commit labels the image alike).
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="overdue-notifier" \
      org.opencontainers.image.description="Loan repayment reminders: Kafka in, compliant SMS and push out, delivery results back to Kafka." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOTIFIER_TEMPLATES_DIR=/app/templates \
    NOTIFIER_HTTP_PORT=8080 \
    NOTIFIER_RECEIPTS_HTTP_PORT=8081
RUN groupadd --system --gid 10001 notifier \
    && useradd --system --uid 10001 --gid notifier --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin notifier
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Templates ship in the image as the default; Kubernetes mounts the ConfigMap over them.
COPY templates ./templates
# Numeric ids, so runAsNonRoot can verify them without reading /etc/passwd.
USER 10001:10001
# 8080: /metrics and the probes (cluster-internal); 8081: provider webhooks (the Ingress).
EXPOSE 8080 8081
ENTRYPOINT ["overdue-notifier"]
CMD ["run"]
