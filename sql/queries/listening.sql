-- How an idle worker learns about new jobs (see pgjobs.listening).

-- name: listening_listen --
-- The argument is an identifier (psycopg.sql), not a parameter.
LISTEN {channel};

-- name: listening_backend_pid --
SELECT pg_backend_pid() AS pid;

-- name: listening_notify --
SELECT pg_notify(%(channel)s, '');

-- name: listening_unlisten_all --
UNLISTEN *;

-- name: listening_wakeups_arm --
-- This worker waits for a notification (sql/schema/55_jobs_inserted.sql).
SELECT pgjobs.wakeups_arm();

-- name: listening_wakeups_disarm --
SELECT pgjobs.wakeups_disarm();

-- name: listening_wakeups_settled --
-- No enqueueing transaction that may not have notified is still open.
SELECT pgjobs.wakeups_settled() AS settled;
