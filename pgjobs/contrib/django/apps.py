"""The Django app: task discovery, schema on migrate, defer on Django's connection."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class PgjobsConfig(AppConfig):  # type: ignore[misc]
    name = "pgjobs.contrib.django"
    label = "pgjobs"
    verbose_name = "pgjobs"

    def ready(self) -> None:
        from pgjobs.contrib.django import jobs

        app = jobs.get_app()
        # task.defer() (procrastinate's API) joins the caller's atomic() block.
        app.default_defer_connection = jobs.django_connection
        try:
            from pgjobs.contrib.django import tasks_backend
        except ImportError:  # Django < 6: no django.tasks
            pass
        else:
            tasks_backend.register(app)
        autodiscover_modules("tasks")
        post_migrate.connect(upgrade_schema, sender=self)


def upgrade_schema(
    sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    """``manage.py migrate``: pgjobs' alembic revisions up to head, on the
    database pgjobs uses (its own version table, pgjobs_alembic_version)."""
    from pgjobs.contrib.django import jobs
    from pgjobs.db import schema

    if using != jobs.django_alias():
        return
    # The database as it is now (the test runner's test_<name> included).
    target = jobs.current_settings(jobs.get_app().settings)
    before = schema.current(target)
    schema.upgrade(target)
    after = schema.current(target)
    if kwargs.get("verbosity", 1) >= 1 and before != after:
        print(f"  pgjobs schema: {before or 'empty'} -> {after}")
