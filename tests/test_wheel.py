"""The built wheel carries its migrations: install it in a fresh venv, outside the checkout,
and migrate a new database with `wactl db upgrade`."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_installed_wheel_migrates(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("wactl-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "wactl/_alembic/env.py" in names
    assert any(n.startswith("wactl/_alembic/versions/0001_") for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies come from this test run's environment (no network needed), but not
    # wactl itself: a .pth line adds that site-packages without running its .pth files,
    # so the checkout's editable install stays out and the wheel's copy is the only wactl.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            site,
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = dict(os.environ, WACTL_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}")

    def wactl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "wactl", *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [str(python), "-c", "import wactl; print(wactl.__file__)"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(site), where
    upgraded = wactl("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    from wactl.db.migrate import head_revision

    head = head_revision()
    assert f"from empty to {head}" in upgraded.stderr
    current = wactl("db", "current")
    assert current.stdout == f"{head} (up to date)\n"
    assert f"-> {head} (head)" in wactl("db", "history").stdout
