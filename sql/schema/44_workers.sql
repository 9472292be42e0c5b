-- Registered workers. alive: heartbeat within pgjobs.stalled_after.
CREATE VIEW pgjobs.workers AS
SELECT worker.id AS worker_id,
       worker.last_heartbeat,
       extract(epoch FROM (SELECT pgjobs.as_of()) - worker.last_heartbeat)::double precision
           AS heartbeat_age_s,
       worker.last_heartbeat
           >= (SELECT pgjobs.as_of()) - pgjobs.setting('pgjobs.stalled_after', '30 seconds')::interval
           AS alive,
       (SELECT count(*)
          FROM procrastinate_jobs AS job
         WHERE job.worker_id = worker.id AND job.status = 'doing') AS running_jobs
  FROM procrastinate_workers AS worker;

-- Running jobs whose worker is gone or silent for pgjobs.stalled_after: the
-- workers' stalled-job rescuer retries them (or dead-letters them).
CREATE VIEW pgjobs.stalled_jobs AS
SELECT job.id AS job_id,
       job.task_name::text AS task_name,
       job.queue_name::text AS queue_name,
       job.worker_id,
       job.attempts,
       coalesce(job.started_at, started.at) AS started_at,
       worker.last_heartbeat,
       extract(epoch FROM (SELECT pgjobs.as_of()) - worker.last_heartbeat)::double precision
           AS heartbeat_age_s
  FROM procrastinate_jobs AS job
  LEFT JOIN procrastinate_workers AS worker ON worker.id = job.worker_id
  -- Logged when it started before migration 0024 or through procrastinate.
  CROSS JOIN LATERAL (
       SELECT max(event.at) AS at
         FROM pgjobs.event_log AS event
        WHERE job.started_at IS NULL
          AND event.job_id = job.id AND event.type = 'started'
  ) AS started
 WHERE job.status = 'doing'
   AND (worker.id IS NULL
        OR worker.last_heartbeat
           < (SELECT pgjobs.as_of()) - pgjobs.setting('pgjobs.stalled_after', '30 seconds')::interval);

-- What each pgjobs worker held at its last heartbeat (pgjobs.worker_heartbeat,
-- pgjobs.worker.reconcile): the jobs it runs, holds prefetched or is writing the
-- outcome of; unheld: its 'doing' jobs it did not hold then; orphans: those
-- unheld at two heartbeats in a row (a claim whose reply was still on its
-- way at one heartbeat is held at the next). token: the worker process, so
-- that a worker id handed out twice (ids given out in a failover's
-- replication lag window are given out again) is told apart.
CREATE TABLE pgjobs.worker_states (
    worker_id bigint PRIMARY KEY
        REFERENCES procrastinate_workers (id) ON DELETE CASCADE,
    token uuid NOT NULL,
    held bigint[] NOT NULL,
    unheld bigint[] NOT NULL,
    orphans bigint[] NOT NULL,
    beat_at timestamptz NOT NULL
);
