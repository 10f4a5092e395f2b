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
# Dependencies first: this layer is reused while only the code changes. (Every dependency
# ships manylinux wheels, so no compiler is needed.)
COPY pyproject.toml README.md ./
RUN mkdir -p service && touch service/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall --yes overdue-notifier
COPY service ./service
# service/templates links to ../templates: the wheel copies them in (the package's defaults).
COPY templates ./templates
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOTIFIER_TEMPLATES_DIR=/app/templates \
    NOTIFIER_HTTP_PORT=8080
RUN groupadd --system --gid 10001 notifier \
    && useradd --system --uid 10001 --gid notifier --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin notifier
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Templates ship in the image as the default; Kubernetes mounts the ConfigMap over them.
COPY templates ./templates
# Numeric ids, so runAsNonRoot can verify them without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["overdue-notifier"]
CMD ["run"]
