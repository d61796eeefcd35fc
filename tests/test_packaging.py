"""``pip install .`` builds the package quietly, with everything the program reads at run time inside."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from plumbing.version import VERSION
from tests.process import ROOT


@pytest.mark.timeout(180)
def test_the_wheel_builds_without_warnings_and_holds_the_package_data(tmp_path: Path) -> None:
    # What `pip install .` does first, verbose so that the build backend's own output shows. Byte-compiling
    # is left on, as on an operator's machine (this one turns it off, and setuptools says so).
    environ = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=170,
        env=environ,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    # pip indents what the build backend prints; pip's own lines (about this machine's index) are not.
    backend = [line for line in (built.stdout + built.stderr).splitlines() if line.startswith("  ")]
    assert backend, "pip -v shows the build output"
    assert [line for line in backend if "warn" in line.lower()] == []
    (wheel,) = tmp_path.glob("airudder_receiver-*.whl")
    assert wheel.name.startswith(f"airudder_receiver-{VERSION}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "server.py",
        "commands/sample_push.json",
        "handlers/inspector_assets/index.html",
        "handlers/inspector_assets/inspector.css",
        "handlers/inspector_assets/inspector.js",
        "storage/sqlite/schema.py",
        "storage/postgres/schema.py",
        "plumbing/version.py",
    } <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_make_run_reinstalls_when_a_file_of_any_installed_package_changes() -> None:
    """make run's SOURCES come from pyproject's package list: a package added there is watched too."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    shown = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "--eval=show: ; @echo $(PACKAGES) : $(SOURCES)", "show"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    packages, sources = shown[: shown.index(":")], shown[shown.index(":") + 1 :]
    assert packages == [name.rstrip("*") for name in include]
    for package in packages:
        assert f"{package}/__init__.py" in sources
    assert "storage/postgres/batches.py" in sources  # files in sub-packages count too


def test_make_run_takes_a_port_without_editing_config_toml() -> None:
    def recipe(*args: str) -> list[str]:
        dry = subprocess.run(["make", "-n", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert dry.returncode == 0, dry.stderr
        return [line.rstrip() for line in dry.stdout.splitlines() if " serve" in line]

    assert recipe("PORT=9123") == [".venv/bin/airudder-receiver serve --port 9123"]
    assert recipe() == [".venv/bin/airudder-receiver serve"]
