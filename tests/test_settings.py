"""Configuration: file, flags and environment; a bad config is one sentence and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

import server
from settings import API_TOKEN_ENV, PUSH_TOKEN_ENV, ConfigError, Settings, load

ROOT = Path(__file__).parent.parent


def test_shipped_config_lists_every_key_with_its_default() -> None:
    import tomllib

    shipped = tomllib.loads((ROOT / "config.toml").read_text())
    defaults = Settings()
    assert set(shipped) == set(defaults.__dataclass_fields__)
    for name, value in shipped.items():
        assert value == getattr(defaults, name), name


def test_flags_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PUSH_TOKEN_ENV, raising=False)
    config = tmp_path / "c.toml"
    config.write_text('port = 9000\nack = "queued"\nack_timeout = 2\n')
    settings = load(str(config), {"port": 9100, "host": None})
    assert (settings.port, settings.ack, settings.ack_timeout, settings.host) == (
        9100,
        "queued",
        2.0,
        "127.0.0.1",
    )


def test_environment_sets_the_push_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PUSH_TOKEN_ENV, "from-env")
    config = tmp_path / "c.toml"
    config.write_text('push_token = "from-file"\n')
    assert load(str(config)).push_token == "from-env"


def test_environment_sets_the_api_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_TOKEN_ENV, "read-from-env")
    config = tmp_path / "c.toml"
    config.write_text('api_token = "read-from-file"\n')
    assert load(str(config)).api_token == "read-from-env"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 70000\n", "port must be between 1 and 65535"),
        ('ack = "maybe"\n', "ack must be one of committed, queued"),
        ('port = "80"\n', "port must be an integer, not '80'"),
        ("colour = 1\n", "unknown key 'colour'"),
        ("port = \n", "not valid TOML"),
        ('synchronous = "SOMETIMES"\n', "synchronous must be one of"),
        ("ack_timeout = 30\n", "ack_timeout must be more than 0 and at most 9"),
    ],
)
def test_bad_config_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(str(config))
    assert server.main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_missing_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert server.main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
