-- name: job_status_counts --
-- How many of the given jobs are in each state.
SELECT status::text AS status, count(*) AS jobs
  FROM procrastinate_jobs
 WHERE id = ANY(%(ids)s)
 GROUP BY status
 ORDER BY status;
