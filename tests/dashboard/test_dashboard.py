"""The dashboard over HTTP (Starlette's TestClient) against real PostgreSQL:
every page and action, the rows they change, the audit trail, CSRF,
read-only mode, the pgjobs_monitor role, basic auth and escaping."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from pgjobs import App, Settings
from pgjobs.dashboard import create_app
from pgjobs.dashboard.security import CONTENT_SECURITY_POLICY, CSRF_COOKIE
from pgjobs.scheduling import schedules
from pgjobs.testing.server import with_dbname
from tests.support import rows, run_cli, run_worker
from tests.support.apps.dashboard import EVIL, EVIL_TASK


def make_settings(db_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=db_url, embedded_dir=tmp_path / "unused", _env_file=None, **extra
    )  # type: ignore[call-arg]


def client_for(settings: Settings, **options: Any) -> TestClient:
    return TestClient(create_app(settings, **options), follow_redirects=False)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with client_for(settings) as test_client:
        yield test_client


def token(client: TestClient) -> str:
    """The CSRF token a page's forms carry (and its cookie set)."""
    page = client.get("/audit")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    value = found.group(1) if found else client.cookies[CSRF_COOKIE]
    assert client.cookies[CSRF_COOKIE] == value
    return value


def failed_jobs(app: App, tmp_path: Path, n: int, note: str = "") -> list[int]:
    """``n`` dash.flaky jobs run by a real (in-process) worker: failed for good."""
    with psycopg.connect(app.settings.database_url or "") as conn:
        ids = [
            app.enqueue(
                conn, "dash.flaky", {"marker": str(tmp_path / f"m{i}"), "note": note}
            )
            for i in range(n)
        ]
    asyncio.run(run_worker(app))
    return [i for i in ids if i is not None]


def audit_rows(db_url: str) -> list[tuple[Any, ...]]:
    return rows(
        db_url,
        "SELECT actor, action, target, job_ids FROM pgjobs.audit_log ORDER BY id",
    )


def status_of(db_url: str, job_id: int) -> str:
    return str(
        rows(db_url, f"SELECT status FROM procrastinate_jobs WHERE id = {job_id}")[0][0]
    )


PAGES = [
    "/",
    "/queues",
    "/jobs",
    "/jobs?status=failed",
    "/dead-letters",
    "/tasks",
    "/workers",
    "/schedules",
    "/breakers",
    "/audit",
    "/jobs/bulk?action=retry",
]


def test_every_page_answers_and_escapes_hostile_text(
    client: TestClient, dash_app: App, db_url: str, tmp_path: Path
) -> None:
    [job_id] = failed_jobs(dash_app, tmp_path, 1, note=EVIL)
    with psycopg.connect(db_url) as conn:
        dash_app.enqueue(conn, EVIL_TASK, {"note": EVIL})
    asyncio.run(run_worker(dash_app))
    schedules.add_schedule(db_url, dash_app, "nightly", "dash.ok", cron="0 3 * * *")
    for path in [*PAGES, f"/jobs/{job_id}", f"/jobs?task={EVIL_TASK}"]:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "<script>alert" not in page.text, path
        assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    detail = client.get(f"/jobs/{job_id}").text
    assert (
        "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in detail
    )  # message, args
    assert 'id="job-args"' in detail and "Retry</button>" in detail
    overview = client.get("/").text
    assert "dash.&lt;script&gt;" in overview  # the hostile task name, in the events
    assert "<script src=" in overview and "<script>" not in overview  # no inline script
    letters = client.get("/dead-letters").text
    assert "dash.flaky" in letters and "ValueError" in letters
    assert "nightly" in client.get("/schedules").text
    queues = client.get("/queues").text
    assert (
        ">default</a>" in queues and "/jobs?queue=default&amp;status=failed" in queues
    )


def test_healthz_is_200_when_healthy_and_503_with_problems(
    client: TestClient, dash_app: App, tmp_path: Path
) -> None:
    healthy = client.get("/healthz")
    assert healthy.status_code == 200 and healthy.json() == {
        "healthy": True,
        "problems": [],
    }
    failed_jobs(dash_app, tmp_path, 1)
    sick = client.get("/healthz")
    assert sick.status_code == 503
    assert [p["check"] for p in sick.json()["problems"]] == ["new_dead_letters"]


def test_retry_runs_a_failed_job_again_and_is_audited(
    client: TestClient, dash_app: App, db_url: str, tmp_path: Path
) -> None:
    [job_id] = failed_jobs(dash_app, tmp_path, 1)
    response = client.post(f"/jobs/{job_id}/retry", data={"csrf_token": token(client)})
    assert response.status_code == 303
    assert re.fullmatch(rf"/jobs/{job_id}\?done=\d+", response.headers["location"])
    assert status_of(db_url, job_id) == "todo"
    assert audit_rows(db_url) == [
        ("anonymous@testclient", "retry", f"job {job_id}", [job_id])
    ]
    shown = client.get(response.headers["location"]).text
    assert f"Done: retry job {job_id}" in shown
    (tmp_path / "m0").touch()
    asyncio.run(run_worker(dash_app))
    assert status_of(db_url, job_id) == "succeeded"
    # Retrying a job that is not failed: 409, nothing audited.
    again = client.post(f"/jobs/{job_id}/retry", data={"csrf_token": token(client)})
    assert again.status_code == 409 and "only failed jobs can be retried" in again.text
    assert len(audit_rows(db_url)) == 1


def test_every_post_needs_the_csrf_token(
    client: TestClient, dash_app: App, db_url: str, tmp_path: Path
) -> None:
    [job_id] = failed_jobs(dash_app, tmp_path, 1)
    good = token(client)
    forged = good.split(".")[0] + "." + "0" * 64
    for data in ({}, {"csrf_token": "nope"}, {"csrf_token": forged}):
        refused = client.post(f"/jobs/{job_id}/retry", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    # A valid token without its cookie (another site's form) is refused too.
    with client_for(client.app.state.dashboard.settings) as stranger:  # type: ignore[attr-defined]
        assert (
            stranger.post(
                f"/jobs/{job_id}/retry", data={"csrf_token": good}
            ).status_code
            == 403
        )
    for path in [
        "/dead-letters/1/replay",
        "/dead-letters/purge",
        "/breakers/reset",
        "/schedules/pause",
        "/jobs/bulk",
        f"/jobs/{job_id}/cancel",
    ]:
        assert client.post(path, data={}).status_code == 403, path
    assert status_of(db_url, job_id) == "failed"
    assert audit_rows(db_url) == []


def test_cancel_and_abort(client: TestClient, dash_app: App, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        waiting = dash_app.enqueue(conn, "dash.ok", {"n": 1})
        running = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
            "VALUES ('default', 'dash.ok', '{}', 'doing') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
    csrf = token(client)
    assert (
        client.post(f"/jobs/{waiting}/cancel", data={"csrf_token": csrf}).status_code
        == 303
    )
    assert status_of(db_url, waiting) == "cancelled"
    assert (
        client.post(f"/jobs/{running}/abort", data={"csrf_token": csrf}).status_code
        == 303
    )
    assert rows(
        db_url, f"SELECT abort_requested FROM procrastinate_jobs WHERE id = {running}"
    ) == [(True,)]
    assert "(abort requested)" in client.get(f"/jobs/{running}").text
    assert (
        client.post(f"/jobs/{waiting}/cancel", data={"csrf_token": csrf}).status_code
        == 409
    )
    assert (
        client.post("/jobs/999999/cancel", data={"csrf_token": csrf}).status_code == 404
    )
    assert [r[1:] for r in audit_rows(db_url)] == [
        ("cancel", f"job {waiting}", [waiting]),
        ("abort", f"job {running}", [running]),
    ]


def test_bulk_retry_of_the_filtered_failed_jobs(
    client: TestClient, dash_app: App, db_url: str, tmp_path: Path
) -> None:
    ids = failed_jobs(dash_app, tmp_path, 3)
    listing = client.get("/jobs?status=failed&task=dash.flaky").text
    assert "3 matching job(s)" in listing and 'id="bulk-retry"' in listing
    confirm = client.get("/jobs/bulk?action=retry&task=dash.flaky").text
    assert "3 failed job(s) will be" in confirm
    csrf = token(client)
    form = {"csrf_token": csrf, "action": "retry", "task": "dash.flaky", "queue": ""}
    assert client.post("/jobs/bulk", data=form).status_code == 400  # not confirmed
    done = client.post("/jobs/bulk", data={**form, "confirm": "yes"})
    assert done.status_code == 303
    assert [status_of(db_url, i) for i in ids] == ["todo"] * 3
    [(_, action, target, job_ids)] = audit_rows(db_url)
    assert (action, sorted(job_ids)) == ("bulk_retry", sorted(ids))
    assert target == "3 job(s) matching status=failed, task=dash.flaky"
    # Bulk cancel of the waiting ones, then nothing is left to cancel.
    cancel = {
        "csrf_token": csrf,
        "action": "cancel",
        "task": "dash.flaky",
        "confirm": "yes",
    }
    assert client.post("/jobs/bulk", data=cancel).status_code == 303
    assert [status_of(db_url, i) for i in ids] == ["cancelled"] * 3


def test_dead_letters_replay_one_a_group_and_purge(
    client: TestClient, dash_app: App, db_url: str, tmp_path: Path
) -> None:
    first, *others = failed_jobs(dash_app, tmp_path, 3)
    letters = dict(rows(db_url, "SELECT job_id, id FROM pgjobs.dead_letters"))
    page = client.get("/dead-letters").text
    assert "Replay 3</button>" in page  # the group: dash.flaky / ValueError
    csrf = token(client)
    one = client.post(
        f"/dead-letters/{letters[first]}/replay", data={"csrf_token": csrf}
    )
    assert one.status_code == 303
    [(new_job,)] = rows(
        db_url, f"SELECT replay_job_id FROM pgjobs.dead_letters WHERE job_id = {first}"
    )
    assert status_of(db_url, new_job) == "todo"
    assert (
        client.post(
            f"/dead-letters/{letters[first]}/replay", data={"csrf_token": csrf}
        ).status_code
        == 409
    )
    group = client.post(
        "/dead-letters/replay",
        data={"csrf_token": csrf, "task": "dash.flaky", "error_type": "ValueError"},
    )
    assert group.status_code == 303
    assert rows(
        db_url, "SELECT count(*) FROM pgjobs.dead_letters WHERE replayed_at IS NULL"
    ) == [(0,)]
    assert "No pending dead letter." in client.get("/dead-letters").text
    # Purge: nothing is a day old yet; then the letters are made older.
    purge = {"csrf_token": csrf, "older_than": "1d", "replayed_only": "yes"}
    assert client.post("/dead-letters/purge", data=purge).status_code == 303
    assert rows(db_url, "SELECT count(*) FROM pgjobs.dead_letters") == [(3,)]
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE pgjobs.dead_letters SET created_at = now() - interval '2 days'"
        )
    assert client.post("/dead-letters/purge", data=purge).status_code == 303
    assert rows(db_url, "SELECT count(*) FROM pgjobs.dead_letters") == [(0,)]
    assert (
        client.post(
            "/dead-letters/purge", data={**purge, "older_than": "2h"}
        ).status_code
        == 400
    )
    actions = [(r[1], r[2]) for r in audit_rows(db_url)]
    assert actions == [
        ("replay", f"dead letter {letters[first]} of job {first}"),
        ("replay", "2 dead letter(s) of task dash.flaky with ValueError"),
        ("purge", "0 dead letter(s) older than 1d (replayed only)"),
        ("purge", "3 dead letter(s) older than 1d (replayed only)"),
    ]
    assert len(audit_rows(db_url)[1][3]) == len(others)


def test_breaker_reset_and_schedule_pause_resume_run(
    client: TestClient, dash_app: App, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO pgjobs.breakers (name, state, failure_threshold, recovery_window, "
            "success_threshold, failure_count, opened_at, reopens_at, last_error) VALUES "
            "('payments-api', 'open', 2, '5 minutes', 1, 2, now(), now() + interval '5 minutes', %s)",
            (EVIL,),
        )
    page = client.get("/breakers").text
    assert (
        "payments-api" in page
        and "Reset</button>" in page
        and "<script>alert" not in page
    )
    csrf = token(client)
    assert (
        client.post(
            "/breakers/reset", data={"csrf_token": csrf, "name": "payments-api"}
        ).status_code
        == 303
    )
    assert rows(db_url, "SELECT state FROM pgjobs.breakers") == [("closed",)]
    assert (
        client.post(
            "/breakers/reset", data={"csrf_token": csrf, "name": "nope"}
        ).status_code
        == 404
    )

    schedules.add_schedule(db_url, dash_app, "hourly", "dash.ok", cron="0 * * * *")
    for action in ("pause", "resume"):
        assert (
            client.post(
                f"/schedules/{action}", data={"csrf_token": csrf, "name": "hourly"}
            ).status_code
            == 303
        )
        paused = rows(
            db_url, "SELECT paused FROM pgjobs.schedules WHERE name = 'hourly'"
        )
        assert paused == [(action == "pause",)]
    run = client.post("/schedules/run", data={"csrf_token": csrf, "name": "hourly"})
    assert run.status_code == 303
    [(job_id, task)] = rows(db_url, "SELECT id, task_name FROM procrastinate_jobs")
    assert task == "dash.ok"
    assert [r[1:] for r in audit_rows(db_url)] == [
        ("reset_breaker", "breaker payments-api", []),
        ("pause_schedule", "schedule hourly", []),
        ("resume_schedule", "schedule hourly", []),
        ("run_schedule", "schedule hourly", [job_id]),
    ]
    audit_page = client.get("/audit").text
    assert "run_schedule" in audit_page and f"/jobs/{job_id}" in audit_page


def test_read_only_shows_no_action_nor_arguments_and_refuses_posts(
    settings: Settings, dash_app: App, db_url: str, tmp_path: Path
) -> None:
    [job_id] = failed_jobs(dash_app, tmp_path, 1, note="secret-payload")
    with client_for(settings, read_only=True) as client:
        for path in [*PAGES, f"/jobs/{job_id}"]:
            page = client.get(path)
            assert page.status_code == 200, path
            assert (
                'method="post"' not in page.text and "Retry</button>" not in page.text
            )
            assert 'id="read-only"' in page.text
        detail = client.get(f"/jobs/{job_id}").text
        assert "secret-payload" not in detail and "Hidden in read-only mode." in detail
        csrf = token(client)
        refused = client.post(f"/jobs/{job_id}/retry", data={"csrf_token": csrf})
        assert refused.status_code == 403 and "read-only" in refused.text
    assert status_of(db_url, job_id) == "failed" and audit_rows(db_url) == []


@pytest.fixture
def monitor_url(db_url: str) -> Iterator[str]:
    name = f"dash_monitor_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pgjobs_monitor").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
    base = psycopg.conninfo.conninfo_to_dict(db_url)
    base.update(user=name, password=password)
    try:
        yield psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in base.items()})
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_the_monitor_role_gets_a_read_only_dashboard_of_the_views(
    monitor_url: str, dash_app: App, db_url: str, tmp_path: Path
) -> None:
    [job_id] = failed_jobs(dash_app, tmp_path, 1)
    settings = Settings(database_url="postgresql://unused", _env_file=None)  # type: ignore[call-arg]
    settings = settings.model_copy(update={"database_url": monitor_url})
    with client_for(settings) as client:
        overview = client.get("/")
        assert overview.status_code == 200 and 'id="read-only"' in overview.text
        assert "dead letters" in overview.text and 'method="post"' not in overview.text
        for path in ["/tasks", "/workers", "/schedules", "/breakers", "/audit"]:
            assert client.get(path).status_code == 200, path
        denied = client.get(f"/jobs/{job_id}")
        assert denied.status_code == 403 and "pgjobs_monitor" in denied.text
        csrf = token(client)
        assert (
            client.post(f"/jobs/{job_id}/retry", data={"csrf_token": csrf}).status_code
            == 403
        )
    assert status_of(db_url, job_id) == "failed"


def test_basic_auth_on_every_page_and_as_the_audit_actor(
    db_url: str, dash_app: App, tmp_path: Path
) -> None:
    settings = make_settings(
        db_url, tmp_path, dashboard_username="ops", dashboard_password="s3cret"
    )
    [job_id] = failed_jobs(dash_app, tmp_path, 1)
    with client_for(settings) as client:
        for path in [*PAGES, "/healthz", "/static/dashboard.css", "/live"]:
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic")
        assert client.get("/", auth=("ops", "wrong")).status_code == 401
        assert client.get("/", auth=("eve", "s3cret")).status_code == 401
        client.auth = ("ops", "s3cret")
        assert client.get("/").status_code == 200
        assert (
            client.post(
                f"/jobs/{job_id}/retry", data={"csrf_token": token(client)}
            ).status_code
            == 303
        )
    assert audit_rows(db_url) == [("ops", "retry", f"job {job_id}", [job_id])]


def test_keyset_pagination_and_bounded_count(
    client: TestClient, dash_app: App, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        ids = [dash_app.enqueue(conn, "dash.ok", {"n": n}) for n in range(120)]
    first = client.get("/jobs").text
    assert "120 matching job(s)" in first
    shown = [int(i) for i in re.findall(r'class="job-link">(\d+)<', first)]
    assert shown == sorted(ids, reverse=True)[:50]  # type: ignore[type-var]
    older = re.search(r'id="older" href="([^"]+)"', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert [int(i) for i in re.findall(r'class="job-link">(\d+)<', second)] == sorted(
        ids, reverse=True
    )[50:100]  # type: ignore[type-var]
    assert client.get("/jobs?status=nonsense").status_code == 400
    assert client.get("/jobs?before=x").status_code == 400
    assert client.get("/jobs/123456789").status_code == 404


def test_every_dashboard_connection_has_a_statement_timeout(
    db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(db_url, tmp_path, dashboard_statement_timeout=1.5)
    app = create_app(settings)
    dashboard = app.state.dashboard
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        with dashboard.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("1500ms",)
        # Local to the request's transaction: the server connection keeps
        # nothing (behind a transaction pooler another client gets it next).
        with dashboard.pool().connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_dashboard_refuses_a_public_address_without_a_password(db_url: str) -> None:
    result = run_cli("dashboard", "--host", "0.0.0.0", db_url=db_url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: refusing to serve the dashboard on 0.0.0.0 without a password: set "
        "PGJOBS_DASHBOARD_USERNAME and PGJOBS_DASHBOARD_PASSWORD, or bind 127.0.0.1"
    ]


def test_database_unreachable_is_one_line(tmp_path: Path) -> None:
    url = with_dbname("postgresql://nobody@127.0.0.1:1/x", "x")
    result = run_cli("dashboard", "--port", "0", db_url=url)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: cannot connect")


def test_mounted_in_a_host_app_under_a_prefix(
    settings: Settings, dash_app: App, db_url: str, tmp_path: Path
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    [job_id] = failed_jobs(dash_app, tmp_path, 1)
    host = Starlette(
        routes=[Mount("/admin/jobs", create_app(settings, basic_auth=False))]
    )
    with TestClient(host, follow_redirects=False) as client:
        page = client.get(f"/admin/jobs/jobs/{job_id}")
        assert page.status_code == 200
        assert 'href="/admin/jobs/static/dashboard.css"' in page.text
        assert f'action="/admin/jobs/jobs/{job_id}/retry"' in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        done = client.post(
            f"/admin/jobs/jobs/{job_id}/retry", data={"csrf_token": csrf.group(1)}
        )
        assert done.status_code == 303
        assert done.headers["location"].startswith(f"/admin/jobs/jobs/{job_id}?done=")
        assert client.get("/admin/jobs/static/dashboard.js").status_code == 200
    assert status_of(db_url, job_id) == "todo"


@pytest.mark.slow
def test_the_dashboard_command_serves_behind_basic_auth(db_url: str) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from tests.support import ROOT, cli_env

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgjobs",
            "dashboard",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--read-only",
        ],
        env=cli_env(
            db_url, PGJOBS_DASHBOARD_USERNAME="ops", PGJOBS_DASHBOARD_PASSWORD="pw"
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError as exc:
                assert exc.code == 401  # no credentials
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        request = urllib.request.Request(
            url,
            headers={"Authorization": "Basic b3BzOnB3"},  # ops:pw
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read()) == {"healthy": True, "problems": []}
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert f"pgjobs dashboard on http://0.0.0.0:{port}/ (read-only)" in err
    assert "Traceback" not in err


def test_queues_page_pauses_and_resumes_a_queue(
    client: TestClient, settings: Settings, dash_app: App, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        dash_app.enqueue(conn, "dash.ok", {"n": 1}, queue="mail")
    page = client.get("/queues").text
    assert "Pause</button>" in page and "paused</span>" not in page
    csrf = token(client)
    paused = client.post("/queues/pause", data={"csrf_token": csrf, "name": "mail"})
    assert paused.status_code == 303 and "/queues?done=" in paused.headers["location"]
    [(paused_by,)] = rows(db_url, "SELECT paused_by FROM pgjobs.paused_queues")
    assert paused_by.startswith("dashboard: ")
    page = client.get(paused.headers["location"]).text
    assert "paused</span>" in page and "Resume</button>" in page
    assert 'id="notice"' in page and "pause_queue queue mail" in page
    too_long = client.post(
        "/queues/pause", data={"csrf_token": csrf, "name": "q" * 129}
    )
    assert too_long.status_code == 400
    assert client.post("/queues/resume", data={"name": "mail"}).status_code == 403
    resumed = client.post("/queues/resume", data={"csrf_token": csrf, "name": "mail"})
    assert resumed.status_code == 303
    assert rows(db_url, "SELECT * FROM pgjobs.paused_queues") == []
    assert [row[1:3] for row in audit_rows(db_url)] == [
        ("pause_queue", "queue mail"),
        ("resume_queue", "queue mail"),
    ]
    with client_for(settings, read_only=True) as read_only:
        page = read_only.get("/queues").text
        assert "Pause</button>" not in page and 'method="post"' not in page
