# The engine's base for the harness's real nodes (built by e2e/images): red-base plus Ray and every
# other dependency of red[engine,operator] from PyPI, standing in for rayproject/ray:2.60.0-py311.
ARG BASE
FROM ${BASE}
ARG REQUIREMENTS
# e2e/images mounts a throwaway directory at /pip-cache (pip's cache here): no downloaded wheel stays in the image.
# Changing this file: bump RECIPE in e2e/images (its keys do not read this file).
# hadolint ignore=DL3013,DL3042
RUN PIP_CACHE_DIR=/pip-cache pip install --disable-pip-version-check ${REQUIREMENTS} \
 && python -c "import ray, torch; print('ray', ray.__version__, 'torch', torch.__version__)"
CMD ["/bin/bash"]
