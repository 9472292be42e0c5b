from __future__ import annotations

from pathlib import Path

import pytest

from pgjobs import ConfigError, load_settings


def test_database_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGJOBS_DATABASE_URL", "postgresql://u@db.example:5432/jobs")
    assert load_settings().database_url == "postgresql://u@db.example:5432/jobs"


def test_no_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGJOBS_DATABASE_URL", raising=False)
    settings = load_settings(_env_file=None)
    assert settings.database_url is None
    assert settings.embedded_dir == Path(".pgjobs/postgres")


def test_dotenv_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGJOBS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "PGJOBS_DATABASE_URL=postgresql://x@h/d\nPGJOBS_CONCURRENCY=3\n"
    )
    settings = load_settings()
    assert settings.database_url == "postgresql://x@h/d"
    assert settings.concurrency == 3


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PGJOBS_DATABASE_URL", "mysql://root@localhost/db"),
        ("PGJOBS_CONCURRENCY", "zero"),
        ("PGJOBS_CONCURRENCY", "0"),
        ("PGJOBS_PREFETCH", "-1"),
        ("PGJOBS_SHUTDOWN_GRACE", "-1"),
        ("PGJOBS_LOG_FORMAT", "xml"),
    ],
)
def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert message.startswith(f"invalid setting {variable}:")
    assert "\n" not in message
