# syntax=docker/dockerfile:1
# Red's images, built from this checkout:
#
#   docker build --target operator -t ghcr.io/red-dev/red-operator:0.1.0 .
#   docker build --target engine   -t ghcr.io/red-dev/red-engine:0.1.0 .
#
# Both install the `red` wheel with pip and the extras from pyproject.toml, as CI does (scripts/bootstrap
# installs the same extras; tests/chart/test_dockerfile.py repeats the operator install in a fresh venv
# and lints this file with hadolint).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The CPU Ray image is enough for GPUs too: PyPI's torch wheels bring their own CUDA libraries and only
# need the node's NVIDIA driver (mounted by the NVIDIA container toolkit / device plugin).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311
# Must equal red/_version.py (tests/unit/test_version.py checks): it names the wheel below.
ARG RED_VERSION=0.1.0

# ---- wheel: build red once, from the sources only (see .dockerignore)
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY red/ red/
COPY operator/ operator/
# pip builds in isolation with the build-system requirements pyproject.toml names.
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

# ---- operator-venv: red[operator] in a venv that the slim runtime stage copies whole
FROM ${PYTHON_IMAGE} AS operator-venv
ARG RED_VERSION
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/red \
 && /opt/red/bin/pip install --no-cache-dir --disable-pip-version-check \
      "/wheels/red-${RED_VERSION}-py3-none-any.whl[operator]"

# ---- operator: slim, non-root, no torch and no Ray (only kopf, kubernetes, pydantic)
FROM ${PYTHON_IMAGE} AS operator
RUN groupadd --system --gid 10001 red \
 && useradd --system --uid 10001 --gid red --no-create-home --shell /usr/sbin/nologin red
COPY --from=operator-venv /opt/red /opt/red
# The chart mounts the root filesystem read-only: no bytecode caches; temporary files go to /tmp.
ENV PATH=/opt/red/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without resolving names.
USER 10001:10001
# 8000: Prometheus metrics; 8080: kopf's liveness endpoint (/healthz).
EXPOSE 8000 8080
ENTRYPOINT ["red-operator"]

# ---- engine: the Ray image plus red[engine,kube,s3]; the operator submits the engine as a Ray job
# (`python -m red_operator.engine_job`), whose report ConfigMap writer needs only the kubernetes client.
FROM ${RAY_IMAGE} AS engine
ARG RED_VERSION
COPY --from=wheel /wheels /tmp/wheels
# The Ray image runs as its own non-root user (ray, uid 1000), which owns its Python environment.
RUN pip install --no-cache-dir --disable-pip-version-check \
      "/tmp/wheels/red-${RED_VERSION}-py3-none-any.whl[engine,kube,s3]" \
 && python -c "import ray, red, red_operator.engine_job; assert ray.__version__ == '2.60.0', ray.__version__"
ENV PYTHONUNBUFFERED=1
