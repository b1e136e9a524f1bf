# syntax=docker/dockerfile:1
# The GPU worker image: torch with CUDA from the PyTorch index, then `pip install .[worker]` (diffusers, peft).
# The CUDA runtime libraries come inside the torch wheels; the host needs only the NVIDIA driver and the NVIDIA
# Container Toolkit. Build: `docker compose build worker` (context: the repo root).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The torch build BENCHMARKS.md measured on an H100. CUDA 13.0 wheels need an NVIDIA driver >= 580; for an older
# driver pass e.g. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 (driver >= 570) and a
# TORCH_VERSION that index carries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
ARG TORCH_VERSION=2.11.0

# 1. Builder: wheels for torch (CUDA build) and for the project with its worker extra.
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_INDEX_URL
ARG TORCH_VERSION
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
# The CUDA build carries a local version (e.g. 2.11.0+cu130), which pip ranks above PyPI's build of that release.
RUN pip wheel --no-cache-dir --wheel-dir /wheels --extra-index-url "${TORCH_INDEX_URL}" -c constraints.txt \
    "torch==${TORCH_VERSION}" ".[worker]"

# 2. Runtime: installs from those wheels alone (no index) and runs as an unprivileged user.
FROM ${PYTHON_IMAGE} AS runtime
ARG TORCH_VERSION
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEADSHOT_DATA_DIR=/data \
    HEADSHOT_MODEL_CACHE_DIR=/models \
    HF_HOME=/models/huggingface \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# torch.compile (Inductor and Triton) builds small C launchers at run time, so the runtime keeps a C compiler.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# The same uid as the bot image, so both can write the shared data volume.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin headshot \
    && install -d -o headshot -g headshot /data /models /models/huggingface
# Versions are fixed by the wheels the builder resolved.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "torch==${TORCH_VERSION}" "headshot-bot[worker]"
WORKDIR /home/headshot
# Numeric, so a runtime (e.g. Kubernetes runAsNonRoot) can verify it is not root.
USER 10001:10001
# /data: blob storage shared with the bot (when not on S3). /models: SDXL downloads (HEADSHOT_MODEL_CACHE_DIR)
# and the Hugging Face home, kept across restarts so the first start is the only download.
VOLUME ["/data", "/models"]
CMD ["headshot-worker"]
