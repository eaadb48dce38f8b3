"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per thing they provide."""

pytest_plugins = [
    "tests.fixtures.ray_local",
    "tests.fixtures.cluster",
    "tests.fixtures.s3",
]
