DROP FUNCTION pgjobs.wakeups_settled();
DROP FUNCTION pgjobs.wakeups_disarm();
DROP FUNCTION pgjobs.wakeups_arm();

CREATE OR REPLACE FUNCTION pgjobs.notify_jobs_inserted()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    _queue record;
    _first bigint;
BEGIN
    INSERT INTO procrastinate_events (job_id, type)
    SELECT id, 'deferred'::procrastinate_job_event_type
      FROM new_jobs
     WHERE status = 'todo'
     ORDER BY id;
    FOR _queue IN
        SELECT queue_name, min(id) AS job_id
          FROM new_jobs
         WHERE status = 'todo'
         GROUP BY queue_name
    LOOP
        -- A channel name has at most 63 bytes: a queue whose name is longer
        -- than 40 bytes gets no channel of its own (procrastinate's per-row
        -- trigger failed the insert instead); the any-queue channel and
        -- polling still wake its workers.
        IF octet_length('procrastinate_queue_v1#' || _queue.queue_name) <= 63 THEN
            PERFORM pg_notify('procrastinate_queue_v1#' || _queue.queue_name,
                              json_build_object('type', 'job_inserted',
                                                'job_id', _queue.job_id)::text);
        END IF;
        _first := least(_first, _queue.job_id);
    END LOOP;
    IF _first IS NOT NULL THEN
        PERFORM pg_notify('procrastinate_any_queue_v1',
                          json_build_object('type', 'job_inserted',
                                            'job_id', _first)::text);
    END IF;
    RETURN NULL;
END;
$$;

DROP FUNCTION pgjobs.wakeup_wanted();
