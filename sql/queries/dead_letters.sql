-- Dead letters (sql/schema: dead_letters): read, replay, purge.

-- name: dead_letters_get --
SELECT * FROM pgjobs.dead_letters WHERE id = %(id)s;

-- name: dead_letters_list --
SELECT * FROM pgjobs.dead_letters
 WHERE (%(task)s::text IS NULL OR task_name = %(task)s)
   AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
   AND (%(error_type)s::text IS NULL OR error_type = %(error_type)s)
   AND (%(since)s::timestamptz IS NULL OR last_failed_at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR last_failed_at < %(until)s)
   AND (%(replayed)s::boolean IS NULL
        OR (replayed_at IS NOT NULL) = %(replayed)s)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: dead_letters_replay --
-- Enqueue one new job per matching letter not yet replayed (through
-- pgjobs.defer_jobs) and mark the letters, in one statement. Letters another
-- replay holds are skipped, so a letter is never replayed twice.
WITH locked AS (
    SELECT id, queue_name, task_name, priority, lock, args
      FROM pgjobs.dead_letters
     WHERE replayed_at IS NULL
       AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
       AND (%(task)s::text IS NULL OR task_name = %(task)s)
       AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
       AND (%(error_type)s::text IS NULL OR error_type = %(error_type)s)
       AND (%(since)s::timestamptz IS NULL OR last_failed_at >= %(since)s)
       AND (%(until)s::timestamptz IS NULL OR last_failed_at < %(until)s)
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
    SELECT locked.*, row_number() OVER (ORDER BY id) AS ord FROM locked
), deferred AS MATERIALIZED (
    SELECT pgjobs.defer_jobs(
               array_agg(ROW(queue_name, task_name, priority, lock, NULL, args,
                             NULL)::procrastinate_job_to_defer_v1
                         ORDER BY ord)) AS ids
      FROM picked
), mapped AS (
    SELECT picked.id, new_job.job_id
      FROM picked
      JOIN deferred ON true
      JOIN LATERAL unnest(deferred.ids) WITH ORDINALITY AS new_job(job_id, ord)
        ON new_job.ord = picked.ord
)
UPDATE pgjobs.dead_letters AS letter
   SET replayed_at = now(), replay_job_id = mapped.job_id
  FROM mapped
 WHERE letter.id = mapped.id
RETURNING letter.id AS letter_id, letter.replay_job_id AS job_id,
          letter.task_name, letter.queue_name;

-- name: dead_letters_purge --
DELETE FROM pgjobs.dead_letters
 WHERE created_at < now() - %(older_than)s::interval
   AND (NOT %(replayed_only)s OR replayed_at IS NOT NULL)
RETURNING id;
