# gsm3-ops container: `docker build -t gsm3-ops .` (CPU) or
# `docker build --build-arg TORCH_VARIANT=cu126 -t gsm3-ops:cuda .` (CUDA 12.6 wheels).
# The entrypoint is the CLI; the default command runs the scheduler.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/gsm3
ENV PATH=/opt/gsm3/bin:$PATH
# torch first, from PyTorch's index for the chosen variant, so the project does not pull
# another build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/requirements.lock ./deploy/
COPY gsm3_ops ./gsm3_ops
# Every dependency at the version the lock file pins (tested together); the cluster extra
# (dask.distributed, dask-jobqueue) for `inference.cluster`.
RUN pip install --constraint deploy/requirements.lock ".[cluster]"

FROM ${PYTHON_IMAGE} AS runtime
# libgomp for torch's CPU kernels; tini reaps children and forwards SIGTERM to the scheduler;
# rclone fetches MSWEP from GloH2O's shared drive; ca-certificates for every HTTPS source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini rclone ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/gsm3 /opt/gsm3
RUN useradd --create-home --uid 10001 --user-group gsm3 \
    && mkdir -p /var/lib/gsm3 \
    && chown 10001:10001 /var/lib/gsm3
# The configuration must be mounted at /etc/gsm3/config.yaml: without it every command stops
# with "cannot read config file" (exit 2), so a forgotten mount never publishes the demo
# profile's synthetic data into the real publish root.
ENV PATH=/opt/gsm3/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GSM3_CONFIG=/etc/gsm3/config.yaml \
    GSM3_DATA_ROOT=/var/lib/gsm3/data \
    GSM3_PUBLISH_ROOT=/var/lib/gsm3/publish
USER 10001:10001
WORKDIR /var/lib/gsm3
VOLUME ["/var/lib/gsm3"]
# Healthy while the latest published day is at most 3 days behind what the sources serve.
HEALTHCHECK --interval=15m --timeout=2m --start-period=6h \
    CMD ["gsm3-ops", "status", "--max-lag", "3"]
ENTRYPOINT ["tini", "--", "gsm3-ops"]
CMD ["schedule"]
