-- A running job's progress (sql/schema: job_progress).

-- name: progress_set --
INSERT INTO pgjobs.job_progress (job_id, progress, message)
VALUES (%(job_id)s, %(progress)s, %(message)s)
ON CONFLICT (job_id) DO UPDATE
   SET progress = EXCLUDED.progress, message = EXCLUDED.message,
       updated_at = now();
