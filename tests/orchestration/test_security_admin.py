"""airgrid-admin without a broker: bundles, registry, password hashes, refused secrets."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from airgrid.config import ConfigError
from collector import config as collector_config
from edge_agent import config as edge_config
from orchestration.admin import passwd
from orchestration.admin.broker_config import Listeners
from orchestration.admin.cli import main as admin_main
from orchestration.admin.errors import Conflict
from orchestration.admin.home import AdminHome


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _admin(home: Path, *args: str) -> int:
    return admin_main(["--home", str(home), *args])


def test_cli_issues_a_certificate_bundle_the_agent_loads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _admin(home, "ca", "init", "--name", "Xihe", "--broker-host", "mqtt.xihe.example") == 0
    assert _admin(home, "broker-config", "--out", str(tmp_path / "broker"),
                  "--tls-port", "8884") == 0
    install = tmp_path / "etc-airgrid"
    assert _admin(home, "device", "add", "xh-001", "--install-dir", str(install)) == 0
    bundle = home / "devices" / "xh-001"
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["ca.crt", "device.crt", "device.key", "edge.toml"]
    assert all(_mode(bundle / n) == 0o600 for n in names)
    # Installed where the config says, the agent accepts it as it is.
    shutil.copytree(bundle, install)
    cfg = edge_config.load(install / "edge.toml")
    assert cfg.device == "xh-001"
    assert (cfg.broker.host, cfg.broker.port) == ("mqtt.xihe.example", 8884)
    assert cfg.broker.cert_file == str(install / "device.crt")
    assert cfg.broker.username is None and cfg.broker.password is None
    cert = x509.load_pem_x509_certificate((bundle / "device.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((bundle / "ca.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "xh-001"
    cert.verify_directly_issued_by(ca)
    reg = json.loads((home / "registry.json").read_text())
    assert reg["devices"]["xh-001"]["serial"] == cert.serial_number
    assert _mode(home / "registry.json") == 0o600 and _mode(home / "ca" / "ca.key") == 0o600


def test_password_device_bundle_and_password_file(tmp_path: Path) -> None:
    home = AdminHome(tmp_path / "home")
    home.init("Xihe", "10.0.0.5")
    broker_dir = tmp_path / "broker"
    home.write_broker_config(broker_dir, Listeners(port=1884), [])
    issued = home.add_device("xh-002", use_password=True)
    assert issued.password
    text = (issued.path / "edge.toml").read_text()
    assert 'username = "xh-002"' in text and issued.password in text
    assert sorted(p.name for p in issued.path.iterdir()) == ["edge.toml"]  # no TLS here
    entries = dict(line.split(":", 1) for line in (broker_dir / "passwd").read_text().split())
    assert passwd.verify_password(issued.password, entries["xh-002"])
    assert not passwd.verify_password("wrong", entries["xh-002"])
    assert "user xh-002\ntopic write airgrid/v1/dev/xh-002/up\n" in (
        broker_dir / "acl-accounts").read_text()
    home.revoke_device("xh-002")
    assert "xh-002" not in (broker_dir / "passwd").read_text()
    assert "xh-002" not in (broker_dir / "acl-accounts").read_text()


def test_revoked_serial_is_in_the_crl_and_the_name_can_be_issued_again(tmp_path: Path) -> None:
    home = AdminHome(tmp_path / "home")
    home.init("Xihe", "localhost")
    home.add_device("xh-003")
    with pytest.raises(Conflict):
        home.add_device("xh-003")
    old = home.revoke_device("xh-003")
    crl = x509.load_pem_x509_crl(home.crl.read_bytes())
    assert old.serial is not None
    assert crl.get_revoked_certificate_by_serial_number(old.serial) is not None
    home.add_device("xh-003")  # a replacement Pi under the same id
    new_serial = home.registry().devices["xh-003"].serial
    assert new_serial != old.serial
    crl = x509.load_pem_x509_crl(home.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(new_serial) is None  # type: ignore[arg-type]
    ca = x509.load_pem_x509_certificate(home.ca_cert.read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]


def test_our_password_hashes_match_mosquitto_passwd(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    f = tmp_path / "pw"
    f.touch()
    subprocess.run([tool, "-b", str(f), "u", "s3cret pass"], check=True)
    hashed = f.read_text().strip().split(":", 1)[1]
    assert passwd.verify_password("s3cret pass", hashed)
    salt = base64.b64decode(hashed.split("$")[3])
    assert passwd.hash_password("s3cret pass", int(hashed.split("$")[2]), salt) == hashed


def test_cli_errors_are_named_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    home = tmp_path / "home"
    assert _admin(home, "device", "add", "xh-1") == 2
    assert "ca init" in capsys.readouterr().err
    assert _admin(home, "ca", "init", "--broker-host", "mqtt.xihe.example") == 0
    assert _admin(home, "ca", "init", "--broker-host", "mqtt.xihe.example") == 2
    assert "exists already" in capsys.readouterr().err
    assert _admin(home, "device", "add", "bad id") == 2
    assert "device id 'bad id'" in capsys.readouterr().err
    assert _admin(home, "device", "revoke", "nope") == 2
    assert "no device 'nope'" in capsys.readouterr().err
    assert _admin(home, "account", "add", "collector", "--role", "collector") == 0
    assert _admin(home, "device", "add", "collector") == 2
    assert "service account" in capsys.readouterr().err
    assert _admin(home, "device", "add", "xh-9", "--password") == 0
    out = capsys.readouterr().out
    password = (home / "devices" / "xh-9" / "edge.toml").read_text().split('password = "')[1]
    assert password.split('"')[0] not in out  # the password is in the bundle, not printed


def test_generated_broker_config_admits_no_anonymous_client(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _admin(home, "ca", "init", "--broker-host", "mqtt.xihe.example")
    _admin(home, "broker-config", "--out", str(tmp_path / "b"), "--config-path",
           "/mosquitto/config", "--data-dir", "/mosquitto/data")
    conf = (tmp_path / "b" / "mosquitto.conf").read_text().splitlines()
    listeners = [i for i, line in enumerate(conf) if line.startswith("listener ")]
    assert len(listeners) == 2
    for start, end in zip(listeners, [*listeners[1:], len(conf)], strict=True):
        assert "allow_anonymous false" in conf[start:end]
    assert "allow_anonymous true" not in conf
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert "crlfile /mosquitto/config/crl.pem" in conf
    assert "persistence_location /mosquitto/data/" in conf


# --- secrets in config files ---------------------------------------------------------


def test_edge_config_with_password_refused_when_world_readable(tmp_path: Path) -> None:
    f = tmp_path / "edge.toml"
    f.write_text('device = "d1"\n[broker]\nhost = "mqtt.test"\nusername = "d1"\npassword = "x"\n')
    f.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        edge_config.load(f)
    assert str(err.value).startswith(f"{f}: broker.password: expected a file others cannot")
    assert "-rw-r--r--" in str(err.value)
    assert '"x"' not in str(err.value)
    f.chmod(0o600)
    assert edge_config.load(f).broker.password == "x"


def test_edge_config_refused_when_key_file_world_readable(tmp_path: Path) -> None:
    key = tmp_path / "device.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    f = tmp_path / "edge.toml"
    f.write_text(f'device = "d1"\n[broker]\nhost = "mqtt.test"\nca_file = "ca.crt"\n'
                 'cert_file = "device.crt"\n'
                 f'key_file = "{key}"\n')
    f.chmod(0o644)  # no secret in the file itself: fine
    with pytest.raises(ConfigError, match=r"edge.toml: broker.key_file: expected .*device.key"):
        edge_config.load(f)
    key.chmod(0o600)
    assert edge_config.load(f).broker.key_file == str(key)


def test_collector_config_with_password_refused_when_world_readable(tmp_path: Path) -> None:
    f = tmp_path / "collector.toml"
    f.write_text('[influx]\nusername = "w"\npassword = "secret"\n')
    f.chmod(0o604)
    with pytest.raises(ConfigError, match=r"collector.toml: influx.password: expected"):
        collector_config.load(f)
    f.chmod(0o640)  # group-readable is the operator's choice (e.g. an `airgrid` group)
    assert collector_config.load(f).influx.password == "secret"
    g = tmp_path / "plain.toml"
    g.write_text('[broker]\nhost = "127.0.0.1"\n')
    g.chmod(0o644)
    assert collector_config.load(g).broker.host == "127.0.0.1"


def test_rewritten_broker_files_keep_their_owner(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    home = AdminHome(tmp_path / "home")
    home.init("Xihe", "localhost")
    out = tmp_path / "broker"
    home.write_broker_config(out, Listeners(), [])
    for f in out.iterdir():
        os.chown(f, 1883, 1883)  # the eclipse-mosquitto image's mosquitto user
    home.add_device("xh-5", use_password=True)
    for name in ("passwd", "acl-accounts", "crl.pem"):
        st = (out / name).stat()
        assert (st.st_uid, st.st_gid) == (1883, 1883), name
    assert "xh-5" in (out / "passwd").read_text()
    assert _mode(out / "passwd") == 0o600


def test_config_errors_never_repeat_a_secret(tmp_path: Path) -> None:
    f = tmp_path / "edge.toml"
    f.write_text('device = "d1"\n[broker]\npassword = 987654321\n')
    f.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        edge_config.load(f)
    msg = str(err.value)
    assert "broker.password: expected a string" in msg and "987654321" not in msg
    g = tmp_path / "collector.toml"
    g.write_text('[influx]\npassword = ["s3cr3t-token"]\n')
    g.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        collector_config.load(g)
    assert "influx.password" in str(err.value) and "s3cr3t" not in str(err.value)
    # Other keys still show what was given.
    with pytest.raises(ConfigError, match="got 'x'"):
        edge_config.from_dict({"device": "d1", "broker": {"port": "x"}})


# --- no silent localhost ---------------------------------------------------------------


def test_ca_init_needs_the_broker_host_devices_dial(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert _admin(home, "ca", "init") == 2
    err = capsys.readouterr().err
    assert "pass --broker-host NAME" in err and "--broker-host localhost" in err
    assert not (home / "registry.json").exists()


def test_device_add_refuses_a_localhost_ca_unless_asked_explicitly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert _admin(home, "ca", "init", "--broker-host", "localhost") == 0  # a lab: explicit
    assert _admin(home, "device", "add", "xh-1") == 2
    err = capsys.readouterr().err
    assert "the CA's broker host is 'localhost'" in err and "--broker-host NAME" in err
    assert not (home / "devices" / "xh-1").exists()
    assert _admin(home, "device", "add", "xh-1", "--broker-host", "mqtt.xihe.example") == 0
    assert 'host = "mqtt.xihe.example"' in (home / "devices/xh-1/edge.toml").read_text()
    assert _admin(home, "device", "add", "xh-2", "--broker-host", "localhost") == 0
