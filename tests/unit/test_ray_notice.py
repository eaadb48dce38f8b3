"""Ray's token-auth notice is hidden, and only it (no Ray needed: the filter is a plain logging.Filter)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from red.runner import RAY_AUTH_LOGGER, HideTokenAuthNotice, hide_token_auth_notice

NOTICE = "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out."
DISABLED = "Token authentication is disabled for this Ray cluster. Anyone with network access ..."


@pytest.fixture
def red_level() -> Iterator[logging.Logger]:
    logger = logging.getLogger("red")
    before = logger.level
    yield logger
    logger.setLevel(before)


@pytest.mark.parametrize(
    ("message", "red_level_name", "shown"),
    [
        (NOTICE, "WARNING", False),
        (NOTICE, "INFO", True),
        (NOTICE, "DEBUG", True),
        (DISABLED, "WARNING", True),  # security switched off is worth a warning: never hidden
        ("Some other Ray warning", "WARNING", True),
    ],
)
def test_only_the_enabled_notice_is_hidden_unless_info(
    red_level: logging.Logger, message: str, red_level_name: str, shown: bool
) -> None:
    red_level.setLevel(red_level_name)
    record = logging.LogRecord(RAY_AUTH_LOGGER, logging.WARNING, __file__, 1, message, None, None)
    assert HideTokenAuthNotice().filter(record) is shown


def test_installed_once() -> None:
    hide_token_auth_notice()
    hide_token_auth_notice()
    filters = logging.getLogger(RAY_AUTH_LOGGER).filters
    assert sum(isinstance(f, HideTokenAuthNotice) for f in filters) == 1
