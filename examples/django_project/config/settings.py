"""Settings of the example project: one PostgreSQL database from DATABASE_URL."""

import os
import urllib.parse

import django

url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
query = dict(urllib.parse.parse_qsl(url.query))

SECRET_KEY = "example-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "pgjobs.contrib.django",  # migrate, manage.py pgjobs, tasks.py discovery
    "orders",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3
        "NAME": url.path.lstrip("/"),
        "USER": urllib.parse.unquote(url.username or ""),
        "PASSWORD": urllib.parse.unquote(url.password or ""),
        "HOST": url.hostname or query.get("host", ""),
        "PORT": str(url.port or query.get("port", "")),
    }
}
if django.VERSION >= (6, 0):
    TASKS = {
        "default": {"BACKEND": "pgjobs.contrib.django.tasks_backend.PgjobsBackend"}
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
