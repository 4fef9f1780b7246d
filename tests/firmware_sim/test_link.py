"""`airgrid-sim --link PATH` replaces only a simulator's own symlink (a stale one from a
killed run); a regular file, a directory or another symlink at PATH is left alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware_sim.cli import main
from firmware_sim.pty_port import LinkInUse, PtyPort


def test_a_regular_file_is_refused_and_kept(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "edge.toml"
    link.write_text("device = 'precious'\n")
    assert main(["pms5003", "--link", str(link), "--seconds", "0.1"]) == 2
    assert link.read_text() == "device = 'precious'\n" and not link.is_symlink()
    err = capsys.readouterr().err
    assert f"--link {link}: a file is already there and is not a simulator's symlink" in err


@pytest.mark.parametrize("kind", ["directory", "other symlink"])
def test_other_things_are_refused(tmp_path: Path, kind: str) -> None:
    link = tmp_path / "tty"
    if kind == "directory":
        link.mkdir()
    else:
        link.symlink_to(tmp_path)
    with pytest.raises(LinkInUse, match="not a simulator's symlink"):
        PtyPort(link)
    assert link.is_dir()  # untouched


def test_a_stale_simulator_link_is_replaced_and_removed_at_close(tmp_path: Path) -> None:
    link = tmp_path / "tty"
    link.symlink_to("/dev/pts/999999")  # left by a killed run
    port = PtyPort(link)
    try:
        assert os.readlink(link) == port.slave_path
    finally:
        port.close()
    assert not os.path.lexists(link)


def test_close_leaves_a_link_that_is_no_longer_ours(tmp_path: Path) -> None:
    link = tmp_path / "tty"
    port = PtyPort(link)
    link.unlink()
    link.write_text("someone else's\n")
    port.close()
    assert link.read_text() == "someone else's\n"
