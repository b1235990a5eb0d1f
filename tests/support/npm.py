"""Installing a folder's pinned npm clients once (`npm ci` from its committed lock file)."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def installed(directory: Path) -> bool:
    """True when `node_modules` holds exactly what the lock file pins (npm's hidden lock)."""
    hidden = directory / "node_modules" / ".package-lock.json"
    if not hidden.exists():
        return False
    wanted = json.loads((directory / "package-lock.json").read_text())["packages"]
    have = json.loads(hidden.read_text())["packages"]
    return {k: v for k, v in wanted.items() if k} == have


def install_pinned(directory: Path) -> Path:
    """Run `npm ci` in `directory` unless it is already installed; fail (never skip) when Node,
    npm or the install is missing. Returns `directory`."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; the conformance tests need Node 20+ and npm")
    # One installer at a time, should several pytest workers start together.
    lock_path = Path(tempfile.gettempdir()) / f"rillet-npm-ci-{directory.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed(directory):
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci failed in {directory}:\n{done.stdout}\n{done.stderr}")
    return directory
