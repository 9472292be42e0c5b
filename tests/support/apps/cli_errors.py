"""The App ``tests/cli/test_errors.py`` passes as ``--app`` (PGJOBS_* settings,
read when this module is imported)."""

from tests.support.apps import compat as apps_compat

app = apps_compat.build()
