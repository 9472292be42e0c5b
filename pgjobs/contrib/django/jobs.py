"""The Django project's pgjobs App and its settings."""

from __future__ import annotations

import asyncio
import functools
import urllib.parse
from typing import Any

from django.conf import settings as django_conf
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.module_loading import import_string

from pgjobs.app import App
from pgjobs.db.connector import Connector
from pgjobs.errors import ConfigError
from pgjobs.settings import Settings, load_settings


def database_url(alias: str = DEFAULT_DB_ALIAS) -> str:
    """A ``postgresql://`` URL for the ``DATABASES[alias]`` entry."""
    entry = connections.databases[alias]
    if "postgresql" not in entry.get("ENGINE", ""):
        raise ConfigError(
            f"DATABASES[{alias!r}] is not PostgreSQL ({entry.get('ENGINE')!r}): "
            "set PGJOBS_DATABASE_URL"
        )
    user = urllib.parse.quote(entry.get("USER") or "", safe="")
    password = urllib.parse.quote(str(entry.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = entry.get("HOST") or ""
    query: dict[str, str] = {}
    if host.startswith("/"):  # a socket folder: libpq takes it as ?host=
        query["host"] = host
        host = ""
    port = f":{entry['PORT']}" if entry.get("PORT") else ""
    name = urllib.parse.quote(entry.get("NAME") or "", safe="")
    options = entry.get("OPTIONS") or {}
    if "sslmode" in options:
        query["sslmode"] = str(options["sslmode"])
    tail = f"?{urllib.parse.urlencode(query)}" if query else ""
    return f"postgresql://{auth}{host}{port}/{name}{tail}"


def django_alias() -> str:
    """The Django database pgjobs uses (setting ``PGJOBS_DJANGO_DATABASE``)."""
    return str(getattr(django_conf, "PGJOBS_DJANGO_DATABASE", DEFAULT_DB_ALIAS))


def django_settings() -> Settings:
    """pgjobs settings: ``PGJOBS_*`` (environment, ``.env``), the database
    defaulting to Django's (``PGJOBS_DJANGO_DATABASE``, default ``default``)."""
    base = load_settings()
    if base.database_url is not None:
        return base
    return base.model_copy(update={"database_url": database_url(django_alias())})


def current_settings(settings: Settings) -> Settings:
    """``settings`` on Django's database as it is now: Django's test runner
    renames it (test_<name>) after start-up. A PGJOBS_DATABASE_URL stays."""
    if load_settings().database_url is not None:
        return settings
    return settings.model_copy(update={"database_url": database_url(django_alias())})


class DjangoConnector(Connector):
    """pgjobs' connector on Django's database, resolved when the App opens."""

    def _resolve_conninfo(self) -> None:
        now = current_settings(self.settings)
        if now.database_url != self.settings.database_url:
            self.settings = now
            self._pool_args.pop("conninfo", None)
        super()._resolve_conninfo()


def django_connection() -> Any | None:
    """Django's connection for ``task.defer()``, unless in an event loop
    (Django's connections are for synchronous code)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return connections[django_alias()]
    return None


def _default_app() -> App:
    settings = django_settings()
    return App(settings=settings, connector=DjangoConnector(settings))


#: The default App of a Django project (see the package docstring).
app = _default_app()


@functools.cache
def get_app() -> App:
    """The App named by the setting ``PGJOBS_APP``, or ``app``."""
    path = getattr(django_conf, "PGJOBS_APP", None)
    found = app if path is None else import_string(path)
    if not isinstance(found, App):
        raise ConfigError(f"PGJOBS_APP {path!r} is not a pgjobs App")
    return found
