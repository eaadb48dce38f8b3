"""Red's version: the one place it is written.

Derived from it: the package version (pyproject.toml reads it, `dynamic = ["version"]`), the default
engine image tag of `spec.cluster.image`, and `red --version` / `red-operator --version`. Checked
against it by tests/unit/test_version.py: the chart's `appVersion` and the Dockerfile's `ARG RED_VERSION`
(neither can import Python). `python -m red._version` prints it, for scripts.
"""

__version__ = "0.1.0"

if __name__ == "__main__":
    print(__version__)
