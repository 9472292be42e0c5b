"""Running the example Django project's manage.py (examples/django_project)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, cli_env

PROJECT = ROOT / "examples" / "django_project"


def manage(
    *args: str,
    db_url: str,
    python: str | Path = sys.executable,
    timeout: float = 90,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    env = cli_env(
        None, DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="config.settings", **extra_env
    )
    env["PYTHONPATH"] = f"{PROJECT}:{ROOT}"
    return subprocess.run(
        [str(python), "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
