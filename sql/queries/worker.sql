-- name: worker_fetch_jobs --
-- Claim up to %(limit)s jobs for a worker, the first %(start)s of them (NULL:
-- all) to start now (see pgjobs.fetch_jobs).
SELECT * FROM pgjobs.fetch_jobs(%(queues)s, %(worker_id)s, %(limit)s, %(start)s);

-- name: worker_finish_jobs --
-- Finish many jobs in one statement; returns the ids actually finished.
-- With the 'started' events of the prefetched jobs about to start: returns
-- (job, started) rows, started true for those recorded.
SELECT * FROM pgjobs.finish_jobs(
    %(ids)s, %(statuses)s::text[]::procrastinate_job_status[], %(deletes)s,
    %(started)s::bigint[]);

-- name: worker_heartbeat --
SELECT pgjobs.worker_heartbeat(%(worker_id)s);

-- name: worker_release_unstarted_jobs --
SELECT pgjobs.release_unstarted_jobs(%(worker_id)s, %(running)s) AS id;
