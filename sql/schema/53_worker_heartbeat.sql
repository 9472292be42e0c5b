-- procrastinate_update_heartbeat_v1, plus what a failover needs
-- (pgjobs.worker.reconcile):
-- - a worker whose row is gone (pruned while it could not reach the
--   database, or lost in a failover's replication lag window) gets it back
--   under the same id, so its claims stay valid, and the id sequence is
--   moved past it so that no new worker is given it again;
-- - the jobs the worker holds (p_held) are stored in pgjobs.worker_states,
--   and the function returns its 'doing' jobs it does not hold (unheld) and
--   its orphans: those it held at neither this heartbeat nor the one before;
-- - a worker id another worker process (another p_token) has taken meanwhile
--   (ids handed out in the lag window are handed out again after a
--   failover): the worker is registered anew, its held jobs move to the new
--   id, and the new id is returned.
CREATE FUNCTION pgjobs.worker_heartbeat(
    p_worker_id bigint, p_token uuid, p_held bigint[]
)
    RETURNS TABLE (worker_id bigint, unheld bigint[], orphans bigint[])
    LANGUAGE plpgsql
AS $$
DECLARE
    _id bigint := p_worker_id;
    _owner uuid;
    _created boolean;
    _unheld bigint[];
    _orphans bigint[];
BEGIN
    SELECT state.token INTO _owner
      FROM pgjobs.worker_states AS state
     WHERE state.worker_id = p_worker_id
       FOR UPDATE;
    IF _owner IS DISTINCT FROM p_token AND _owner IS NOT NULL THEN
        INSERT INTO procrastinate_workers DEFAULT VALUES
        RETURNING procrastinate_workers.id INTO _id;
        UPDATE procrastinate_jobs AS job
           SET worker_id = _id
         WHERE job.id = ANY(p_held)
           AND job.worker_id = p_worker_id
           AND job.status = 'doing';
    ELSE
        INSERT INTO procrastinate_workers (id, last_heartbeat) OVERRIDING SYSTEM VALUE
        VALUES (p_worker_id, now())
        ON CONFLICT (id) DO UPDATE SET last_heartbeat = now()
        RETURNING xmax = 0 INTO _created;
        IF _created AND p_worker_id
                        >= (SELECT seq.last_value FROM procrastinate_workers_id_seq AS seq)
        THEN
            PERFORM setval(pg_get_serial_sequence('procrastinate_workers', 'id'),
                           p_worker_id);
        END IF;
    END IF;
    SELECT coalesce(array_agg(job.id ORDER BY job.id), '{}') INTO _unheld
      FROM procrastinate_jobs AS job
     WHERE job.worker_id = _id
       AND job.status = 'doing'
       AND job.id <> ALL(p_held);
    INSERT INTO pgjobs.worker_states AS state
           (worker_id, token, held, unheld, orphans, beat_at)
    VALUES (_id, p_token, p_held, _unheld, '{}', now())
    ON CONFLICT ON CONSTRAINT worker_states_pkey DO UPDATE
       SET held = excluded.held,
           unheld = excluded.unheld,
           orphans = ARRAY(SELECT unnest(excluded.unheld)
                           INTERSECT
                           SELECT unnest(state.unheld)
                           ORDER BY 1),
           beat_at = excluded.beat_at
    RETURNING state.orphans INTO _orphans;
    RETURN QUERY SELECT _id, _unheld, _orphans;
END;
$$;

-- The heartbeat moves the id sequence past a worker row it re-creates.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT UPDATE ON SEQUENCE procrastinate_workers_id_seq TO pgjobs_worker;
    END IF;
END;
$$;
