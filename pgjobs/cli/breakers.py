"""``pgjobs breakers``: circuit breaker state, and resetting one."""

from __future__ import annotations

import click

from pgjobs.cli.common import State, json_option, pass_state, print_json, print_table
from pgjobs.failures import breakers as breakers_module


@click.group()
def breakers() -> None:
    """Circuit breakers shared by all workers."""


@breakers.command("list")
@json_option
@pass_state
def list_(state: State, as_json: bool) -> None:
    """List breakers and their state."""
    found = breakers_module.list_breakers(state.settings)
    if as_json:
        print_json(found)
        return
    print_table(
        [
            {
                "name": b.name,
                "state": b.state,
                "failures": f"{b.failure_count}/{b.failure_threshold}",
                "opened_at": b.opened_at,
                "reopens_at": b.reopens_at,
                "last_error": (b.last_error or "")[:50],
            }
            for b in found
        ],
        ["name", "state", "failures", "opened_at", "reopens_at", "last_error"],
    )


@breakers.command()
@click.argument("name")
@json_option
@pass_state
def reset(state: State, name: str, as_json: bool) -> None:
    """Close breaker NAME now and clear its counts."""
    breaker = breakers_module.reset_breaker(state.settings, name)
    if as_json:
        print_json(breaker)
        return
    click.echo(f"breaker {breaker.name} is {breaker.state}")
