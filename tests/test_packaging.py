"""The wheel carries sql/ and migrations/, so a non-editable install can migrate."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from pgjobs.cli import cli
from pgjobs.db import schema
from tests.support import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
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
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    [path] = out.glob("pgjobs-*.whl")
    return path


def test_wheel_contains_sql_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pgjobs/_data/sql/migrations/0001_procrastinate_3.10.0.up.sql" in names
    assert "pgjobs/_data/sql/queries/enqueue.sql" in names
    assert "pgjobs/_data/migrations/env.py" in names
    assert "pgjobs/_data/migrations/versions/0002_pgjobs_base.py" in names


def test_wheel_contains_the_dashboards_templates_and_static_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pgjobs/_data/sql/queries/dashboard.sql" in names
    for name in ("base.html", "overview.html", "jobs.html", "job.html", "audit.html"):
        assert f"pgjobs/dashboard/templates/{name}" in names
    assert "pgjobs/dashboard/static/dashboard.js" in names
    assert "pgjobs/dashboard/static/dashboard.css" in names


def test_wheel_registers_the_pytest_kit_and_is_typed(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert "pgjobs/py.typed" in names  # mypy checks users' task.enqueue() calls
    assert "pgjobs/testing/plugin.py" in names
    assert "pgjobs/contrib/django/management/commands/pgjobs.py" in names
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = archive.read(entry_points).decode()
    assert "[pytest11]\npgjobs = pgjobs.testing.plugin" in text


def test_installed_wheel_migrates_a_database(
    wheel: Path, empty_db_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import pgjobs, pgjobs.schema as s, sys; "
        "assert pgjobs.__file__.startswith(sys.argv[1]), pgjobs.__file__; "
        "s.upgrade(sys.argv[2]); print(s.current(sys.argv[2]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(target), empty_db_url],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == schema.head()


def test_docker_compose_refers_to_real_commands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "worker", "enqueuer"} <= set(services)
    for name in ("migrate", "worker", "enqueuer"):
        service = services[name]
        assert service["environment"]["PGJOBS_DATABASE_URL"].startswith("postgresql://")
        assert "postgres" in service["depends_on"] or "migrate" in service["depends_on"]
    # pgjobs commands exist in the CLI
    for name in ("migrate", "worker"):
        command = services[name]["command"]
        assert command[0] == "pgjobs"
        group = cli
        for word in command[1:]:
            if word.startswith("-"):
                break
            group = group.commands[word]  # type: ignore[attr-defined]
    # the app and the enqueuer module exist
    app_path = services["worker"]["environment"]["PGJOBS_APP"]
    module = app_path.rsplit(".", 1)[0]
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
    enqueuer = services["enqueuer"]["command"]
    assert (ROOT / (enqueuer[2].replace(".", "/") + ".py")).is_file()
    assert (
        services["worker"]["depends_on"]["migrate"]["condition"]
        == "service_completed_successfully"
    )


def test_every_pgjobs_error_is_importable_from_pgjobs() -> None:
    import pgjobs
    from pgjobs import errors

    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.PgjobsError)
    }
    assert defined - set(pgjobs.__all__) == set()
