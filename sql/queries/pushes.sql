-- New jobs pushed to a waiting worker (pgjobs.worker.pushes,
-- sql/schema/57_job_pushes.sql).

-- name: pushes_listen --
-- On the LISTEN session: the lock that says it lives, and its pid.
SELECT pgjobs.push_listen() AS listener;

-- pushes_listen_channel: the argument is an identifier (psycopg.sql), not a
-- parameter; the statement is LISTEN alone (pg_stat_activity shows it).
-- name: pushes_listen_channel --
LISTEN {channel};

-- name: pushes_arm --
SELECT pgjobs.push_arm(%(listener)s, %(worker_id)s, %(queues)s::character varying[]);

-- name: pushes_disarm --
SELECT pgjobs.push_disarm(%(listener)s) AS result;

-- name: pushes_count_starts --
SELECT pgjobs.count_pushed_starts(%(worker_id)s, %(ids)s::bigint[]);

-- name: pushes_unpush --
SELECT pgjobs.unpush_jobs(%(worker_id)s, %(ids)s::bigint[]) AS id;
