"""pgjobs.contrib.django on Django 6 (django.tasks backend), in a venv of its
own: Django 6 needs Python 3.12+, the main venv has 5.2 (tests/contrib/test_django.py).

The venv (.venv-django6, reused while pyproject.toml is unchanged) is made
with the first Python 3.12+ found. Without one the test skips, unless
PGJOBS_TEST_REQUIRE_DJANGO6=1 (CI), where it fails.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, rows
from tests.support.django import manage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VENV = ROOT / ".venv-django6"


def python312() -> str | None:
    """A real Python 3.12+ (pyenv's shims only answer for the active one)."""
    for name in ("python3.12", "python3.13"):
        found = shutil.which(name)
        if found and "/shims/" not in found:
            return found
    for pattern in ("3.12*", "3.1[3-9]*"):
        candidates = sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/{pattern}/bin/python3"))
        )
        if candidates:
            return candidates[-1]
    return None


@pytest.fixture(scope="module")
def django6_python() -> Path:
    base = python312()
    if base is None:
        if os.environ.get("PGJOBS_TEST_REQUIRE_DJANGO6"):
            pytest.fail(
                "PGJOBS_TEST_REQUIRE_DJANGO6 is set but no Python 3.12+ was found"
            )
        pytest.skip("Django 6 needs Python 3.12+: none found")
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == wanted and python.exists()):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True, timeout=120)
        install = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-e",
                str(ROOT),
                "django>=6,<7",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert install.returncode == 0, install.stderr[-3000:]
        stamp.write_text(wanted)
    version = subprocess.run(
        [str(python), "-c", "import django; print(django.VERSION[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "6"
    return python


def test_django6_tasks_backend(django6_python: Path, empty_db_url: str) -> None:
    db_url = empty_db_url
    migrated = manage("migrate", "--noinput", db_url=db_url, python=django6_python)
    assert migrated.returncode == 0, migrated.stderr
    assert "pgjobs schema: empty ->" in migrated.stdout

    placed = manage(
        "place_order", "a@example.com", db_url=db_url, python=django6_python
    )
    assert placed.returncode == 0, placed.stderr
    failed = manage(
        "place_order", "b@example.com", "--fail", db_url=db_url, python=django6_python
    )
    assert failed.returncode == 1 and "payment declined" in failed.stderr
    # issue_invoice.enqueue() (django.tasks) joined the atomic() block too.
    assert sorted(
        rows(
            db_url,
            "SELECT task_name, coalesce(args->>'task_path', ''), queue_name FROM procrastinate_jobs",
        )
    ) == [
        ("orders.tasks.notify_warehouse", "", "default"),
        ("orders.tasks.send_confirmation", "", "emails"),
        ("pgjobs.django_task", "orders.tasks.issue_invoice", "default"),
    ]
    [(job_id,)] = rows(
        db_url,
        "SELECT id FROM procrastinate_jobs WHERE task_name = 'pgjobs.django_task'",
    )

    def result_status() -> str:
        shell = manage(
            "shell",
            "-c",
            f"from orders.tasks import issue_invoice; print(issue_invoice.get_result('{job_id}').status)",
            db_url=db_url,
            python=django6_python,
        )
        assert shell.returncode == 0, shell.stderr
        return shell.stdout.strip().splitlines()[-1]  # after Django 6's import notice

    assert result_status() == "READY"
    worker = manage(
        "pgjobs", "worker", "--one-shot", db_url=db_url, python=django6_python
    )
    assert worker.returncode == 0, worker.stderr
    assert rows(db_url, "SELECT confirmed, shipped, invoiced FROM orders_order") == [
        (True, True, True)
    ]
    assert result_status() == "SUCCESSFUL"
