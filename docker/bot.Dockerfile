# syntax=docker/dockerfile:1
# The bot image: chat frontends, event delivery and the SQLite store. No torch: the base dependencies of
# `pip install .` only, so the bot fits a small box. Build: `docker compose build bot` (context: the repo root).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# 1. Builder: a wheel for the project and for every dependency. A compiler is at hand for any dependency that
#    ships no wheel for this platform; it stays in this stage.
FROM ${PYTHON_IMAGE} AS builder
# Debian's current packages: their security updates are what we want, not a pinned version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY bot ./bot
COPY jobs ./jobs
COPY pipeline ./pipeline
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

# 2. Runtime: installs from those wheels alone (no index, no compiler) and runs as an unprivileged user.
#    The wheels are bind-mounted, not copied, so they add no layer to the image.
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEADSHOT_DATA_DIR=/data
# A fixed uid, the same in the worker image, so both can write the shared data volume.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin headshot \
    && install -d -o headshot -g headshot /data
# Versions are fixed by the wheels the builder resolved.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels headshot-bot
WORKDIR /home/headshot
# Numeric, so a runtime (e.g. Kubernetes runAsNonRoot) can verify it is not root.
USER 10001:10001
# SQLite file, local blob storage (when not on S3): <data_dir>/headshots.sqlite3, <data_dir>/storage.
VOLUME ["/data"]
CMD ["headshot-bot"]
