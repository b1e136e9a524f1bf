# Two images from one file: `bot` (no torch) and `worker` (torch + diffusers). Issue "production deployment"
# hardens these (CUDA base, non-root, model cache volume); this is the first working cut, not yet built in CI.
FROM python:3.11-slim AS base
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY jobs ./jobs
COPY pipeline ./pipeline

FROM base AS bot
RUN pip install .
CMD ["headshot-bot"]

FROM base AS worker
RUN pip install ".[worker]"
CMD ["headshot-worker"]
