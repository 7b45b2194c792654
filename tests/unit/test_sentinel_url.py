"""Reading a Sentinel URL: every Sentinel's address, the master's credentials given once, the database."""

from __future__ import annotations

import pytest

from orchestrator.config.settings import CadreSettings
from orchestrator.queues.app import make_celery
from orchestrator.state.sentinel import is_sentinel_url, sentinel_addresses


def test_every_sentinel_and_the_masters_credentials_are_read():
    addresses, credentials, db = sentinel_addresses(
        "sentinel://cadre:p%40ss@h1:26380/2;sentinel://h2:26379;sentinel://h3")
    assert addresses == [("h1", 26380), ("h2", 26379), ("h3", 26379)]
    assert credentials == ("cadre", "p@ss") and db == 2
    assert is_sentinel_url("sentinel://h1") and not is_sentinel_url("redis://h1:6379/0")


@pytest.mark.parametrize("url", ["sentinel://", "sentinel://h1;redis://h2:6379", ";"])
def test_a_bad_sentinel_url_is_refused(url):
    with pytest.raises(ValueError):
        sentinel_addresses(url)


def test_celery_is_told_the_master_name_only_for_sentinels():
    app = make_celery(CadreSettings(redis_url="sentinel://h1:26379;sentinel://h2:26379", redis_master_name="mine"))
    assert app.conf.broker_transport_options["master_name"] == "mine"
    assert app.conf.result_backend_transport_options["master_name"] == "mine"
    plain = make_celery(CadreSettings(redis_url="redis://127.0.0.1:6379/0"))
    assert "master_name" not in plain.conf.broker_transport_options


def test_the_sentinel_url_wins_over_the_redis_url_a_compose_file_sets():
    settings = CadreSettings(redis_url="redis://cadre:pw@redis:6379/0", redis_sentinel_url="sentinel://s1:26379")
    assert settings.redis.url == "sentinel://s1:26379" and settings.redis.sentinel
    assert CadreSettings(redis_url="redis://r:6379/0").redis.url == "redis://r:6379/0"
