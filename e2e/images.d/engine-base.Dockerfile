# The engine's base for the harness's real nodes (built by e2e/images): red-base plus Ray and every
# other dependency of red[engine,operator] from PyPI, standing in for rayproject/ray:2.60.0-py311.
ARG BASE
FROM ${BASE}
ARG REQUIREMENTS
# e2e/images mounts a pip cache at /root/.cache/pip, so a rebuild downloads nothing twice.
# hadolint ignore=DL3013,DL3042
RUN pip install --disable-pip-version-check ${REQUIREMENTS} \
 && python -c "import ray, torch; print('ray', ray.__version__, 'torch', torch.__version__)"
CMD ["/bin/bash"]
