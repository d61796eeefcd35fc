"""Configuration: file, flags and environment; a bad config is one sentence and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

import server
from plumbing.settings import API_TOKEN_ENV, PUSH_TOKEN_ENV, ConfigError, Settings, load

ROOT = Path(__file__).parent.parent


def test_shipped_config_lists_every_key_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    monkeypatch.delenv(PUSH_TOKEN_ENV, raising=False)
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)
    shipped = tomllib.loads((ROOT / "config.toml").read_text())
    defaults = Settings()
    assert set(shipped) == set(defaults.__dataclass_fields__)
    assert load(str(ROOT / "config.toml")) == defaults


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
        ('allow_ips = "10.0.0.0/8"\n', "allow_ips must be a list of strings, not '10.0.0.0/8'"),
        ("allow_ips = [8]\n", "allow_ips must be a list of strings, not "),
        ('allow_ips = ["10.0.0.0/33"]\n', "allow_ips has '10.0.0.0/33', which is not an address or a network"),
        ('trusted_proxies = ["10.1.2.3/8"]\n', "trusted_proxies has '10.1.2.3/8', which is not an address"),
        ('trusted_proxies = ["proxy.local"]\n', "trusted_proxies has 'proxy.local', which is not an address"),
        ("idle_timeout = 0\n", "idle_timeout must be more than 0 and at most 3600"),
        ("body_timeout = 301\n", "body_timeout must be more than 0 and at most 300"),
        ('tls_cert = "cert.pem"\n', "tls_cert and tls_key must be set together"),
        ('trusted_proxies = ["127.0.0.1"]\n', "trusted_proxies needs api_token"),
        ('push_token = "50%off"\n', "push_token may contain only letters, digits and the characters . _ ~ -"),
        ('push_token = "a b"\n', "push_token may contain only"),
        ('push_token = "a#b"\n', "push_token may contain only"),
        ('api_token = "read?me"\n', "api_token may contain only"),
    ],
)
def test_bad_config_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.delenv(PUSH_TOKEN_ENV, raising=False)
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(str(config))
    assert server.main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_address_lists_are_read_from_toml_lists(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'allow_ips = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]\ntrusted_proxies = ["127.0.0.1"]\n'
        'api_token = "read-0123456789"\n'
    )
    settings = load(str(config))
    assert settings.allow_ips == ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7")
    assert settings.trusted_proxies == ("127.0.0.1",)


@pytest.mark.parametrize("name", ["push_token", "api_token"])
@pytest.mark.parametrize("value", ["1234567890", '["s3cret-in-a-list"]', '{ inner = "s3cret-in-a-table" }'])
def test_a_secret_of_the_wrong_type_is_not_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f"{name} = {value}\n")
    assert server.main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{name} must be a string" in err
    assert not any(secret in err for secret in ("1234567890", "s3cret"))


def test_missing_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert server.main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
