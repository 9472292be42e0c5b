-- pgjobs' own objects live in schema "pgjobs"; procrastinate's stay in the
-- search_path schema where procrastinate expects them.
CREATE SCHEMA pgjobs;

-- Enqueue a batch of jobs. Unlike procrastinate_defer_jobs_v1, a job whose
-- queueing lock is already held by a waiting job is skipped (its slot in the
-- result is NULL) instead of raising: the caller's transaction stays usable
-- and the caller decides whether a duplicate is an error.
-- Ids are drawn before the insert so each input keeps its position.
-- PL/pgSQL so that its plan is cached (a SQL function is planned per call).
CREATE FUNCTION pgjobs.defer_jobs(jobs procrastinate_job_to_defer_v1[])
    RETURNS bigint[]
    LANGUAGE plpgsql
AS $$
DECLARE
    _ids bigint[];
BEGIN
    WITH input AS MATERIALIZED (
        SELECT nextval('procrastinate_jobs_id_seq'::regclass) AS id,
               job.*
          FROM unnest(jobs) WITH ORDINALITY AS job(
                   queue_name, task_name, priority, lock, queueing_lock, args,
                   scheduled_at, ord)
    ), inserted AS (
        INSERT INTO procrastinate_jobs
               (id, queue_name, task_name, priority, lock, queueing_lock, args,
                scheduled_at)
        SELECT input.id, input.queue_name, input.task_name, input.priority,
               input.lock, input.queueing_lock, input.args, input.scheduled_at
          FROM input
         ORDER BY input.ord
        ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
        RETURNING procrastinate_jobs.id
    )
    SELECT coalesce(array_agg(inserted.id ORDER BY input.ord), '{}')
      INTO _ids
      FROM input LEFT JOIN inserted ON inserted.id = input.id;
    RETURN _ids;
END;
$$;

-- A worker's shutdown deletes its row, and the foreign key then clears
-- worker_id on its jobs: without this index that is a full table scan.
CREATE INDEX pgjobs_jobs_worker_id_idx ON procrastinate_jobs (worker_id)
    WHERE worker_id IS NOT NULL;

-- A finished job keeps no worker_id: worker_id is the worker running the
-- job, and the foreign key's ON DELETE SET NULL would otherwise rewrite
-- every kept finished job a worker ever ran when that worker exits or is
-- pruned (100,000 jobs: 0.5 s and 30-50 MB of WAL per exit, growing with
-- history). pgjobs.finish_jobs clears it itself; this trigger catches every
-- other path (procrastinate's finish, cancel and retry functions, admin
-- updates). Failed attempts keep their worker in pgjobs.job_errors.
CREATE FUNCTION pgjobs.clear_job_worker()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.worker_id := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER pgjobs_clear_job_worker
    BEFORE INSERT OR UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.worker_id IS NOT NULL
          AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted'))
    EXECUTE FUNCTION pgjobs.clear_job_worker();

-- On a hot standby, how far the data is behind its primary: 0 while the WAL
-- receiver streams and everything received is replayed; else the time since
-- the last replayed transaction committed on the primary (replay paused or
-- slow, or the primary unreachable); NULL on a primary, and on a standby that
-- has replayed nothing since it started.
CREATE FUNCTION pgjobs.replication_lag()
    RETURNS interval
    LANGUAGE sql
    STABLE
AS $$
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN NULL
        WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()
             AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN interval '0'
        ELSE greatest(interval '0', now() - pg_last_xact_replay_timestamp())
    END;
$$;

-- The moment the data describes: now() on a primary; on a standby, now()
-- minus its replication lag (the last replayed commit when behind). The
-- views measure heartbeat ages and waits from it, so on a standby replaying
-- 40 s behind, a worker that beat 5 s before the last replayed commit is
-- 5 s silent, not 45 s.
CREATE FUNCTION pgjobs.as_of()
    RETURNS timestamptz
    LANGUAGE sql
    STABLE
AS $$
    SELECT now() - coalesce(pgjobs.replication_lag(), interval '0');
$$;
