"""Configuration: file, flags and environment; a bad config is one sentence and exit code 2."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

import server
from plumbing.settings import API_TOKEN_ENV, PUSH_TOKEN_ENV, ConfigError, Settings, load, require_guarded

ROOT = Path(__file__).parent.parent


def test_shipped_config_lists_every_key_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    monkeypatch.delenv(PUSH_TOKEN_ENV, raising=False)
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)
    shipped = tomllib.loads((ROOT / "config.toml").read_text())
    defaults = Settings()
    # forward is a list of tables, shown commented out (an empty list cannot be written beside them).
    assert set(shipped) == set(defaults.__dataclass_fields__) - {"forward"}
    # A relative db_path is the file's folder's, made absolute.
    in_checkout = os.path.abspath(ROOT / "data" / "pushes.sqlite3")
    assert load(str(ROOT / "config.toml")) == dataclasses.replace(defaults, db_path=in_checkout)


def test_shipped_forward_examples_load_once_uncommented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "config.toml").read_text()
    example = "\n".join(line.removeprefix("# ") for line in text[text.index("# [[forward]]") :].splitlines())
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", "whsec_" + "A" * 44)
    config = tmp_path / "c.toml"
    config.write_text(example)
    crm, backoffice = load(str(config)).forward
    assert (crm.name, crm.max_attempts, crm.filter, len(crm.secret)) == ("crm", 21, (("intention", ("A", "B")),), 33)
    assert backoffice.command == ("/usr/local/bin/import-call", "--queue", "collections")


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
    monkeypatch.setenv(PUSH_TOKEN_ENV, "push-from-env-0123")
    config = tmp_path / "c.toml"
    config.write_text('push_token = "push-from-file-0123"\n')
    assert load(str(config)).push_token == "push-from-env-0123"


def test_environment_sets_the_api_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_TOKEN_ENV, "read-from-env-0123")
    config = tmp_path / "c.toml"
    config.write_text('api_token = "read-from-file-0123"\n')
    assert load(str(config)).api_token == "read-from-env-0123"


@pytest.mark.parametrize(("name", "env"), [("push_token", PUSH_TOKEN_ENV), ("api_token", API_TOKEN_ENV)])
def test_an_empty_variable_does_not_clear_the_files_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, env: str
) -> None:
    monkeypatch.setenv(env, "")
    config = tmp_path / "c.toml"
    config.write_text(f'{name} = "from-the-file-0123"\n')
    assert getattr(load(str(config)), name) == "from-the-file-0123"


# A well-formed signing secret (of 32 zero bytes), for tables whose mistake is elsewhere.
ZERO_SECRET = "whsec_" + "A" * 43 + "="


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
        ("log_requests_per_second = -1\n", "log_requests_per_second must not be negative"),
        ("body_timeout = 301\n", "body_timeout must be more than 0 and at most 300"),
        ('tls_cert = "cert.pem"\n', "tls_cert and tls_key must be set together"),
        ('trusted_proxies = ["127.0.0.1"]\n', "trusted_proxies needs api_token"),
        ('push_token = "50%off"\n', "push_token may contain only letters, digits and the characters . _ ~ -"),
        ('push_token = "a b"\n', "push_token may contain only"),
        ('push_token = "a#b"\n', "push_token may contain only"),
        ('api_token = "read?me"\n', "api_token may contain only"),
        ('push_token = "b"\n', "push_token must be at least 16 characters long"),
        ('api_token = "0123456789abcde"\n', "api_token must be at least 16 characters long"),
        ('forward = "x"\n', "forward must be written as [[forward]] tables"),
        ('[[forward]]\nurl = "http://h/"\n', "forward table 1 needs a name of 1 to 40"),
        ('[[forward]]\nname = "crm"\n', "forward destination 'crm' needs exactly one of url and command"),
        ('[[forward]]\nname = "crm"\nurl = "ftp://h/"\n', "url must be an http:// or https:// address"),
        ('[[forward]]\nname = "crm"\nurl = "http://h/"\n', "'crm' needs a secret (or secret_env)"),
        ('[[forward]]\nname = "crm"\nurl = "http://h/"\nsecret = "hunter2"\n', "must be whsec_ followed"),
        ('[[forward]]\nname = "crm"\nurl = "http://h/"\nsecret_env = "NOT_SET_ANYWHERE"\n', "is not set"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\nmax_attempts = 0\n', "max_attempts must be between 1"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\ntimeout = "10s"\n', "timeout must be a number of seconds"),
        ('[[forward]]\nname = "c"\ncommand = "x"\n', "command must be a list of strings"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\nfilter = { caller = "1" }\n', "filter may name workflow_id"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\nretries = 3\n', "'c' has an unknown key 'retries'"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\n[[forward]]\nname = "c"\ncommand = ["y"]\n', "used twice"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\nbackoff_base = 10\nbackoff_cap = 5\n', "at most backoff_cap"),
        (
            f'[[forward]]\nname = "c"\nurl = "http://h/"\nsecret = "{ZERO_SECRET}"\nenv = ["A"]\n',
            "env applies to a command",
        ),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\nenv = ["A=B"]\n', "env must list environment variable names"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\norder = "fifo"\n', "order must be one of parallel, per_call"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\nbreaker_ratio = 0\n', "breaker_ratio must be more than 0"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\nmax_4xx_attempts = 0\n', "max_4xx_attempts must be between"),
        ('[[forward]]\nname = "c"\ncommand = ["x"]\nprobe_cap = 1\n', "probe_cap must be at least backoff_base"),
    ],
)
def test_bad_config_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.delenv(PUSH_TOKEN_ENV, raising=False)
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(str(config))
    assert server.main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_a_bad_forward_secret_is_not_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[forward]]\nname = "crm"\nurl = "http://h/"\nsecret = "whsec_s3cretbutshort"\n')
    assert server.main(["serve", "--config", str(config)]) == 2
    assert "s3cret" not in capsys.readouterr().err


def test_address_lists_are_read_from_toml_lists(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'allow_ips = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]\ntrusted_proxies = ["127.0.0.1"]\n'
        'api_token = "read-0123456789abcdef"\n'
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


@pytest.mark.parametrize(
    ("tokens", "missing"),
    [
        ("", "no push_token and no api_token is set: set AIRUDDER_RECEIVER_PUSH_TOKEN and AIRUDDER_RECEIVER_API_TOKEN"),
        ('push_token = "push-0123456789abcdef"\n', "no api_token is set: set AIRUDDER_RECEIVER_API_TOKEN"),
        ('api_token = "read-0123456789abcdef"\n', "no push_token is set: set AIRUDDER_RECEIVER_PUSH_TOKEN"),
    ],
)
def test_serving_beyond_loopback_without_tokens_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tokens: str, missing: str
) -> None:
    monkeypatch.delenv(PUSH_TOKEN_ENV, raising=False)
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)
    config = tmp_path / "open.toml"
    config.write_text('host = "0.0.0.0"\n' + tokens)
    assert server.main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"host '0.0.0.0' is reachable from other machines, but {missing}" in err
    assert err.count("\n") == 1
    # The commands read the same file without the service's environment.
    assert load(str(config)).host == "0.0.0.0"


def test_serving_beyond_loopback_without_tokens_when_the_operator_says_so() -> None:
    require_guarded(Settings(host="0.0.0.0", allow_unauthenticated=True))
    require_guarded(Settings(host="::", push_token="push-0123456789abcdef", api_token="read-0123456789abcdef"))
    for loopback in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        require_guarded(Settings(host=loopback))
    with pytest.raises(ConfigError, match=re.escape("host 'receiver.example' is reachable")):
        require_guarded(Settings(host="receiver.example"))


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_a_config_file_others_may_change_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("port = 9000\n")
    config.chmod(mode)
    assert server.main(["stats", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"config file {config} may be changed by other users (mode {mode:04o})" in err
    assert f"chmod go-w {config}" in err
    config.chmod(0o644)
    assert load(str(config)).port == 9000


def test_relative_paths_in_a_config_file_start_at_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    config = tmp_path / "etc" / "c.toml"
    config.write_text('db_path = "data/pushes.sqlite3"\ntls_cert = "tls/cert.pem"\ntls_key = "/abs/key.pem"\n')
    monkeypatch.chdir(tmp_path / "elsewhere")
    settings = load(str(Path("..") / "etc" / "c.toml"))
    assert settings.db_path == str(tmp_path / "etc" / "data" / "pushes.sqlite3")
    assert (settings.tls_cert, settings.tls_key) == (str(tmp_path / "etc" / "tls" / "cert.pem"), "/abs/key.pem")
    # Not named in the file: the default, from the file's folder too.
    (tmp_path / "etc" / "empty.toml").write_text("")
    assert load(str(tmp_path / "etc" / "empty.toml")).db_path == str(tmp_path / "etc" / "data" / "pushes.sqlite3")
    # A flag's path is the shell's, from the current folder.
    flagged = load(str(config), {"db_path": "mine.sqlite3"})
    assert flagged.db_path == str(tmp_path / "elsewhere" / "mine.sqlite3")
