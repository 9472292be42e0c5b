"""pgjobs in a Django project: ``INSTALLED_APPS += ["pgjobs.contrib.django"]``.

- ``app``: the project's pgjobs App, its database taken from ``DATABASES``
  (``PGJOBS_*`` environment variables override); declare tasks with
  ``@app.task`` in any installed app's ``tasks.py`` (imported at start-up).
  A project with an App of its own names it in the setting ``PGJOBS_APP``.
- ``app.enqueue(django.db.connection, ...)``, ``task.defer(...)``: on
  Django's connection, inside the current ``transaction.atomic()`` block.
- ``manage.py migrate`` brings pgjobs' schema up (pgjobs' own alembic
  revisions and version table); ``manage.py pgjobs worker`` (and every other
  ``pgjobs`` command) runs with Django set up.
- Django 6: ``TASKS = {"default": {"BACKEND":
  "pgjobs.contrib.django.tasks_backend.PgjobsBackend"}}``.

Importing this module needs configured Django settings.
"""

from pgjobs.contrib.django.jobs import app, django_settings, get_app

__all__ = ["app", "django_settings", "get_app"]
