"""In China: set-up takes a PyPI and an apt mirror from the environment, and every image
name can be put behind a registry mirror, without editing a file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_install_debs_reads_packages_from_the_apt_mirror(tmp_path: Path) -> None:
    """With fake dpkg-query (nothing installed) and apt-get (records its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'for a in "$@"; do case "$a" in Dir::Etc::SourceList=*) '
        f'cat "${{a#Dir::Etc::SourceList=}}" >> {log};; esac; done\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    if not Path("/usr/sbin/policy-rc.d").exists() and os.geteuid() == 0:
        # The script would create (and remove) it; leave the machine alone.
        pytest.skip("would write /usr/sbin/policy-rc.d on this machine")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "AIRGRID_APT_MIRROR": "https://mirrors.tuna.tsinghua.edu.cn/debian"}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "install-debs.sh")], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    calls = log.read_text()
    codename = re.search(r"^VERSION_CODENAME=(\S+)$", Path("/etc/os-release").read_text(),
                         re.MULTILINE)
    assert codename is not None
    want = f"deb https://mirrors.tuna.tsinghua.edu.cn/debian {codename.group(1)} main"
    assert calls.count(want) == 2  # update and install both read the mirror's list only
    assert calls.count("Dir::Etc::SourceParts=-") == 2
    assert "install -y -qq --no-install-recommends mosquitto" in calls


def test_make_setup_leaves_the_package_index_to_pip_index_url() -> None:
    """`PIP_INDEX_URL=... make setup`: no recipe names an index that would override it."""
    make = shutil.which("make")
    assert make is not None
    res = subprocess.run([make, "-n", "-B", "venv"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30, check=True)
    pip_lines = [line for line in res.stdout.splitlines() if "pip install" in line]
    assert pip_lines
    assert not any(re.search(r"(-i|--index-url|--extra-index-url)\b", line)
                   for line in pip_lines)


def test_compose_images_take_a_registry_prefix() -> None:
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    doc = yaml.safe_load(text.replace("${REGISTRY:-}", "mirror.example.cn/"))
    # an image another service of the file builds is local, not pulled
    built = {svc.get("image") for svc in doc["services"].values() if "build" in svc}
    for name, svc in doc["services"].items():
        if "build" in svc:
            assert svc["build"]["args"]["REGISTRY"] == "mirror.example.cn/"
            assert "PIP_INDEX_URL" in svc["build"]["args"]
        elif svc["image"] not in built:
            assert svc["image"].startswith("mirror.example.cn/"), name
    docker = (ROOT / "deploy" / "collector.Dockerfile").read_text()
    assert re.search(r"^ARG REGISTRY=\nFROM \$\{REGISTRY\}python:", docker, re.MULTILINE)
    assert re.search(r"^ARG PIP_INDEX_URL=", docker, re.MULTILINE)
