"""``manage.py pgjobs <command> ...``: the ``pgjobs`` CLI with Django set up.

The App defaults to the project's (``PGJOBS_APP`` or
``pgjobs.contrib.django.app``) and the database to Django's.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):  # type: ignore[misc]
    help = "pgjobs' command line (worker, jobs, dlq, stats, health...) in this project."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("pgjobs_args", nargs=argparse.REMAINDER)

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after "pgjobs" goes to the click CLI as it is (its own
        # --help, options, exit codes), not through Django's argument parser.
        from pgjobs import cli
        from pgjobs.contrib.django import jobs

        app = jobs.get_app()
        # The CLI reads PGJOBS_* once per invocation: hand it Django's choices.
        os.environ.setdefault(
            "PGJOBS_APP",
            getattr(settings, "PGJOBS_APP", None) or "pgjobs.contrib.django.app",
        )
        if app.settings.database_url:
            os.environ.setdefault("PGJOBS_DATABASE_URL", app.settings.database_url)
        sys.argv = [f"{os.path.basename(argv[0])} pgjobs", *argv[2:]]
        cli.main()

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover
        raise NotImplementedError  # run_from_argv does the work
