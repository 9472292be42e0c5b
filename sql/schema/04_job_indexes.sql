-- procrastinate's job indexes, trimmed to what pgjobs reads. Every index
-- entry is written (and WAL-logged) on a job's insert and on each of its
-- status updates (a status change is never a HOT update: status is in
-- every partial index's predicate), so an index nothing reads costs every
-- job its entries (python -m bench --scenarios footprint).

-- (id, lock) over waiting and running jobs served procrastinate's lock
-- anti-join; pgjobs.fetch_jobs probes pgjobs_jobs_lock_rank_idx and
-- procrastinate_jobs_lock_idx_v1 instead.
DROP INDEX procrastinate_jobs_id_lock_idx_v1;

-- pgjobs_jobs_worker_id_idx (02_job_worker_id.sql) has the same key over a
-- superset of its rows (every job with a worker, not only running ones).
DROP INDEX idx_procrastinate_jobs_worker_not_null;

-- The unique lock indexes without the jobs that have no lock (most jobs):
-- NULLs never conflict, and every lookup (lock = x) implies lock IS NOT
-- NULL, so uniqueness and the probes are unchanged. The names stay:
-- procrastinate recognises a queueing-lock conflict by its index name.
DROP INDEX procrastinate_jobs_lock_idx_v1;
CREATE UNIQUE INDEX procrastinate_jobs_lock_idx_v1 ON procrastinate_jobs (lock)
    WHERE status = 'doing' AND lock IS NOT NULL;

DROP INDEX procrastinate_jobs_queueing_lock_idx_v1;
CREATE UNIQUE INDEX procrastinate_jobs_queueing_lock_idx_v1
    ON procrastinate_jobs (queueing_lock)
    WHERE status = 'todo' AND queueing_lock IS NOT NULL;

-- queue_name over every job, finished ones included: three entries per job
-- (its insert and both status updates) for lookups pgjobs never makes. The
-- waiting and running jobs of a queue are in pgjobs_jobs_active_idx
-- (41_monitoring_indexes.sql); every other read by queue is an optional
-- filter beside another index (jobs list by id, retention by event time).
DROP INDEX procrastinate_jobs_queue_name_idx_v1;
