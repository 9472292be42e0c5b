-- What the limits of pgjobs.task_limits count (README: Concurrency and rate
-- limits): the jobs running and the recent starts of each limited task and
-- key, kept by the claim (pgjobs.fetch_jobs); when a rate-held job may start
-- and why a job waits.

-- Jobs of a concurrency-limited task claimed and maybe still running: a
-- claim counts those still 'doing' (a claimed job counts from its claim) and
-- deletes the others. No foreign key: a deleted job's slot goes the same way.
CREATE TABLE pgjobs.limit_slots (
    job_id bigint PRIMARY KEY,
    task_name text NOT NULL,
    -- NULL: the task has no per-key limit.
    limit_key text
);
CREATE INDEX limit_slots_bucket_idx ON pgjobs.limit_slots (task_name, limit_key);

-- One row per start of a rate-limited job (at its claim), for the task
-- (limit_key NULL) and for its key; claims delete those older than the
-- window.
CREATE TABLE pgjobs.limit_starts (
    task_name text NOT NULL,
    limit_key text,
    started_at timestamptz NOT NULL
);
CREATE INDEX limit_starts_bucket_idx
    ON pgjobs.limit_starts (task_name, limit_key, started_at);

-- When the earliest rate-held job may start: the first start in a full
-- window, plus the window (NULL: no rate limit is full). Workers sleep
-- until then instead of polling.
CREATE FUNCTION pgjobs.limits_next_start()
    RETURNS timestamptz
    LANGUAGE sql
    STABLE
AS $$
    SELECT min(bucket.first_start + bucket.period)
      FROM (SELECT lim.period, lim.amount, count(*) AS starts,
                   min(start.started_at) AS first_start
              FROM pgjobs.effective_task_limits AS lim
              JOIN pgjobs.limit_starts AS start
                ON start.task_name = lim.task_name
               AND (lim.scope = 'key') = (start.limit_key IS NOT NULL)
             WHERE lim.kind = 'rate'
               AND start.started_at > clock_timestamp() - lim.period
             GROUP BY lim.task_name, lim.scope, start.limit_key, lim.period,
                      lim.amount) AS bucket
     WHERE bucket.starts >= bucket.amount;
$$;

-- Why a waiting job is held back by a limit (empty: it is not), with the
-- figures: one line per full limit (pgjobs jobs show: "why:").
CREATE FUNCTION pgjobs.job_limit_reasons(p_job_id bigint)
    RETURNS text[]
    LANGUAGE sql
    STABLE
AS $$
    SELECT coalesce(array_agg(reason.line ORDER BY reason.line), '{}')
      FROM procrastinate_jobs AS job
      JOIN pgjobs.effective_task_limits AS lim ON lim.task_name = job.task_name
      CROSS JOIN LATERAL (
          SELECT CASE WHEN lim.scope = 'key'
                      THEN coalesce(job.args ->> lim.key_arg, '') END AS key) AS k
      CROSS JOIN LATERAL (
          SELECT CASE lim.kind
                 WHEN 'concurrency' THEN
                     (SELECT count(*) FROM pgjobs.limit_slots AS slot
                        JOIN procrastinate_jobs AS doing
                          ON doing.id = slot.job_id AND doing.status = 'doing'
                       WHERE slot.task_name = lim.task_name
                         AND (k.key IS NULL OR slot.limit_key = k.key))
                 ELSE
                     (SELECT count(*) FROM pgjobs.limit_starts AS start
                       WHERE start.task_name = lim.task_name
                         AND start.limit_key IS NOT DISTINCT FROM k.key
                         AND start.started_at > clock_timestamp() - lim.period)
                 END AS used) AS usage
      CROSS JOIN LATERAL (
          SELECT CASE lim.kind
                 WHEN 'concurrency' THEN
                     format('concurrency limit: %s of %s running for %s%s',
                            usage.used, lim.amount, job.task_name,
                            CASE WHEN k.key IS NULL THEN ''
                                 ELSE format(' %s=%s', lim.key_arg, k.key) END)
                 ELSE
                     format('rate limit: %s of %s starts in the last %s s for %s%s',
                            usage.used, lim.amount,
                            trim_scale(extract(epoch FROM lim.period)),
                            job.task_name,
                            CASE WHEN k.key IS NULL THEN ''
                                 ELSE format(' %s=%s', lim.key_arg, k.key) END)
                 END AS line) AS reason
     WHERE job.id = p_job_id
       AND job.status = 'todo'
       AND usage.used >= lim.amount;
$$;
