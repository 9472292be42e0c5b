"""``pgjobs roles``: the least-privilege group roles and their members."""

from __future__ import annotations

import click

from pgjobs.cli.common import State, json_option, pass_state, print_json, print_table
from pgjobs.db import roles as roles_module


@click.command()
@json_option
@pass_state
def roles(state: State, as_json: bool) -> None:
    """Least-privilege SQL roles (enqueuer, worker, monitor), members.

    Make a login role a member with e.g. GRANT pgjobs_monitor TO grafana;
    """
    found = roles_module.list_roles(state.settings)
    if as_json:
        print_json(found)
        return
    print_table(
        [
            {
                "role": r.name,
                "purpose": r.purpose,
                "exists": "yes" if r.exists else "no",
                "granted": "yes" if r.granted else "no",
                "members": ", ".join(r.members),
            }
            for r in found
        ],
        ["role", "purpose", "exists", "granted", "members"],
    )
