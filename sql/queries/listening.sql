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
