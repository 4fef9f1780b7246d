"""One config mechanism: every error of a file in one run, secrets found wherever they are."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airgrid.config import ConfigError
from alert_rules.rulefile import check_file
from collector import cli as collector_cli
from collector import config as collector_config
from edge_agent import config as edge_config

SECRET = "s3cr3t-value-0123456789"
WEBHOOK = ('[alerting.channels.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/"\n'
           'secret = "{secret}"\n')


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True,
                          text=True, timeout=60)


def _both(path: Path) -> list[subprocess.CompletedProcess[str]]:
    """`check-config` and `run` on the same file."""
    return [_cli("check-config", str(path)), _cli("run", "--config", str(path))]


# --- every error of a file in one run --------------------------------------------------


def test_collector_reports_every_error_of_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path / "collector.toml", textwrap.dedent("""\
        source = "kafka"
        [broker]
        port = "1883"
        [batch]
        max_messages = -1
        [influx]
        retries = true
        [spool]
        max_byte = 1
        [alerting]
        language = "fr"
        """))
    with pytest.raises(ConfigError) as err:
        collector_config.load(f)
    keys = [p.key for p in err.value.problems]
    assert keys == ["source", "broker.port", "influx.retries", "batch.max_messages",
                    "spool.max_byte", "alerting.language"]
    assert all(line.startswith(f"{f}: ") for line in str(err.value).splitlines())
    assert "spool.max_byte: unknown key, expected one of ['dir', 'max_bytes']" in str(err.value)


def test_agent_reports_every_error_of_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path / "edge.toml", 'device = "a b"\n[sensor]\nmodel = "x"\nwarmup = 3\n'
               "[broker]\nport = 0\n[clock]\ntrust_system_clock = 1\n")
    with pytest.raises(ConfigError) as err:
        edge_config.load(f)
    assert {p.key for p in err.value.problems} == {
        "device", "sensor.model", "sensor.warmup", "broker.port", "clock.trust_system_clock"}


def test_alerting_reports_every_error_of_the_table(tmp_path: Path) -> None:
    f = _write(tmp_path / "collector.toml", textwrap.dedent("""\
        [alerting]
        reopen_within = "soon"
        [alerting.channels.hook]
        type = "webhook"
        url = "ftp://x"
        secret = "short"
        [alerting.channels.sms]
        type = "sms_gateway"
        url = "http://gw"
        body_template = "{to}"
        [alerting.ack]
        http_port = 70000
        """))
    with pytest.raises(ConfigError) as err:
        collector_config.load(f)
    assert [p.key for p in err.value.problems] == [
        "alerting.reopen_within", "alerting.channels.hook.url", "alerting.channels.hook.secret",
        "alerting.channels.sms.body_template", "alerting.ack.http_port"]


def test_rule_file_reports_every_error_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(textwrap.dedent("""\
        rules:
          - name: a
            kind: threshold
            above: high
            window: soon
            colour: red
          - name: b
            kind: flatline
            tolerance: -1
        """), encoding="utf-8")
    errors = [str(e) for e in check_file(f)]
    assert f"{f}:4: above: expected a finite number, got 'high'" in errors
    assert f"{f}:5: window: expected a duration like 30s, 5m, 1h, got 'soon'" in errors
    assert any(e.startswith(f"{f}:6: colour: unknown key") for e in errors)
    assert any(e.startswith(f"{f}:7: window: expected") and "(required)" in e for e in errors)
    assert any(e.startswith(f"{f}:9: tolerance: expected") for e in errors)


# --- check-config validates what run validates -------------------------------------------


def test_check_config_refuses_the_short_webhook_secret_run_refuses(tmp_path: Path) -> None:
    f = _write(tmp_path / "collector.toml", WEBHOOK.format(secret="x"))
    for result in _both(f):
        assert result.returncode == 2, result.stderr
        assert f"error: {f}: alerting.channels.hook.secret: expected a shared secret" \
            in result.stderr
        assert "Traceback" not in result.stderr


# --- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "key"), [
    (f'[influx]\napi = "v2"\ntoken = "{SECRET}"\n', "influx.token"),
    (f'[[alerting.ack.principals]]\nname = "张三"\nphone = "+8613800000001"\n'
     f'token = "{SECRET}"\n', "alerting.ack.principals[0].token"),
    (WEBHOOK.format(secret=SECRET), "alerting.channels.hook.secret"),
    (f'[amqp]\nurls = ["amqp://u:{SECRET}@h/"]\n', "amqp.urls"),
])
def test_world_readable_config_with_any_secret_is_refused(tmp_path: Path, text: str,
                                                         key: str) -> None:
    f = _write(tmp_path / "collector.toml", text, 0o644)
    for result in _both(f):
        assert result.returncode == 2, result.stderr
        assert f"{f}: {key}: expected a file others cannot read" in result.stderr
        assert "-rw-r--r--" in result.stderr and SECRET not in result.stderr
    f.chmod(0o600)
    collector_config.load(f)


def test_secret_from_a_private_file(tmp_path: Path) -> None:
    secret = _write(tmp_path / "token", SECRET + "\n", 0o600)
    f = _write(tmp_path / "collector.toml",
               f'[influx]\napi = "v2"\ntoken_file = "{secret}"\n', 0o644)
    assert collector_config.load(f).influx.token == SECRET  # the config holds no secret
    secret.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        collector_config.load(f)
    assert f"{f}: influx.token_file: expected {secret} readable only by its owner" \
        in str(err.value)
    assert "mode -rw-r--r--" in str(err.value) and SECRET not in str(err.value)


def test_secret_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _write(tmp_path / "collector.toml",
               WEBHOOK.replace('secret = "{secret}"', 'secret_env = "HOOK_SECRET"'), 0o644)
    with pytest.raises(ConfigError, match="secret_env: expected environment variable "
                                          "HOOK_SECRET to be set"):
        collector_config.load(f)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    cfg = collector_config.load(f)
    assert cfg.alerting.channels["hook"].secret == SECRET  # type: ignore[union-attr]
    monkeypatch.setenv("HOOK_SECRET", "x")  # still checked like a value in the file
    with pytest.raises(ConfigError, match=r"alerting\.channels\.hook\.secret: expected a shared"):
        collector_config.load(f)


def test_agent_password_from_a_file(tmp_path: Path) -> None:
    secret = _write(tmp_path / "mqtt-password", "pw\n")
    f = _write(tmp_path / "edge.toml",
               f'device = "d1"\n[broker]\nhost = "mqtt.test"\nusername = "d1"\n'
               f'password_file = "{secret}"\n', 0o644)
    assert edge_config.load(f).broker.password == "pw"


def test_a_secret_and_its_file_together_is_an_error(tmp_path: Path) -> None:
    secret = _write(tmp_path / "pw", "pw")
    f = _write(tmp_path / "collector.toml",
               f'[broker]\npassword = "pw"\npassword_file = "{secret}"\n')
    with pytest.raises(ConfigError, match=r"broker.password_file: expected only one of "
                                          r"password, password_file and password_env"):
        collector_config.load(f)


def test_a_secret_never_appears_in_an_error(tmp_path: Path) -> None:
    f = _write(tmp_path / "collector.toml", textwrap.dedent(f"""\
        [broker]
        password = ["{SECRET}"]
        [influx]
        token = {{ value = "{SECRET}" }}
        [amqp]
        urls = ["http://u:{SECRET}@h/"]
        [alerting.channels.gw]
        type = "sms_gateway"
        url = "http://gw"
        body_template = 1
        token = 5
        headers = {{ x = 1 }}
        [alerting.channels.hook]
        type = "webhook"
        url = "http://x"
        secret = "{SECRET[:10]}"
        """))
    with pytest.raises(ConfigError) as err:
        collector_config.load(f)
    assert len(err.value.problems) >= 6
    assert SECRET not in str(err.value) and SECRET[:10] not in str(err.value)


# --- generated documents ---------------------------------------------------------------

_keys = st.sampled_from(["source", "broker", "port", "host", "password", "token", "influx",
                         "api", "alerting", "channels", "type", "secret", "urls", "amqp",
                         "batch", "max_messages", "rules", "files", "x", "token_file",
                         "password_env", "route", "receiver", "language", "ack"])
_scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1),
                     st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=12), st.sampled_from(["v2", "amqp", "webhook", "zh"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)
_documents = st.dictionaries(_keys, _values, max_size=5)


def _toml(doc: dict[str, object]) -> str:
    """TOML for a document: inline values only, so any nesting is expressible."""
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + "".join(c if c.isalnum() or c in " ._-:/" else f"\\u{ord(c):04x}"
                                 for c in v) + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        assert isinstance(v, dict)
        return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
    return "".join(f"{k} = {value(v)}\n" for k, v in doc.items())


def _check_outcome(code: int, err: str, path: Path) -> None:
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith(f"error: {path}"), err


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_documents)
def test_generated_configs_exit_0_or_2_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, object]
) -> None:
    f = _write(tmp_path / "gen.toml", _toml(doc))
    code = collector_cli.main(["check-config", str(f)])
    _check_outcome(code, capsys.readouterr().err, f)


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_documents)
def test_generated_configs_exit_0_or_2_through_the_cli(
    tmp_path: Path, doc: dict[str, object]
) -> None:
    f = _write(tmp_path / "gen.toml", _toml(doc))
    result = _cli("check-config", str(f))
    _check_outcome(result.returncode, result.stderr, f)
