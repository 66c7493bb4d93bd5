"""End-to-end fixtures: the API served for real by uvicorn on a free port."""

from collections.abc import Iterator

import pytest

from tributary.services import Service, free_port, start_api
from tributary.settings import Settings


@pytest.fixture(scope="session")
def api(settings: Settings) -> Iterator[Service]:
    service = start_api(settings, "127.0.0.1", free_port(), log=settings.home / "e2e-api.log")
    yield service
    service.stop()
