-- name: worker_fetch_jobs --
-- Claim up to %(limit)s jobs for a worker, the first %(start)s of them (NULL:
-- all) to start now (see pgjobs.fetch_jobs). The columns named: a column
-- added to procrastinate_jobs by a migration would otherwise change the
-- result of a statement the running workers have prepared.
SELECT id, status, task_name, priority, lock, queueing_lock, args, scheduled_at,
       queue_name, attempts, abort_requested, worker_id
  FROM pgjobs.fetch_jobs(%(queues)s, %(worker_id)s, %(limit)s, %(start)s);

-- name: worker_finish_jobs --
-- Finish many jobs in one statement; returns the ids actually finished.
-- With the 'started' events of the prefetched jobs about to start: returns
-- (job, started) rows, started true for those recorded.
SELECT * FROM pgjobs.finish_jobs(
    %(ids)s, %(statuses)s::text[]::procrastinate_job_status[], %(deletes)s,
    %(started)s::bigint[], %(worker_id)s);

-- name: worker_release_unstarted_jobs --
SELECT pgjobs.release_unstarted_jobs(%(worker_id)s, %(running)s) AS id;

-- name: worker_beat --
-- The heartbeat with the jobs the worker holds (see pgjobs.worker_heartbeat).
SELECT worker_id, unheld, orphans
  FROM pgjobs.worker_heartbeat(%(worker_id)s, %(token)s, %(held)s::bigint[]);

-- name: worker_release_jobs --
SELECT pgjobs.release_jobs(%(worker_id)s, %(ids)s::bigint[]) AS id;

-- name: worker_interrupt_job --
-- A job still running when the worker's shutdown grace ended: back to the
-- queue, or (the max_interruptions-th time and after) a failed attempt.
SELECT applied, status, interruptions, dead_letter_id
  FROM pgjobs.interrupt_job(
       %(job_id)s, %(worker_id)s, %(error_message)s, %(max_interruptions)s,
       %(retry_at)s, %(priority)s, %(queue)s, %(lock)s, %(delete_job)s);
