-- Queues admin API (pgjobs.admin.queues): pause, resume, list.

-- name: queues_pause --
-- changed: false when the queue was paused already.
SELECT pgjobs.pause_queue(%(queue_name)s, %(paused_by)s) AS changed;

-- name: queues_pause_state --
SELECT paused_at, paused_by FROM pgjobs.paused_queues WHERE queue_name = %(queue_name)s;

-- name: queues_resume --
SELECT pgjobs.resume_queue(%(queue_name)s) AS changed;

-- name: queues_list --
-- Every queue pgjobs.queue_stats knows (jobs, recent outcomes, dead letters,
-- paused), with who paused it and when.
SELECT stats.queue_name, stats.paused, paused.paused_at, paused.paused_by,
       stats.waiting, stats.scheduled, stats.running, stats.succeeded,
       stats.failed, stats.expired, stats.dead_letters, stats.oldest_waiting_s
  FROM pgjobs.queue_stats AS stats
  LEFT JOIN pgjobs.paused_queues AS paused ON paused.queue_name = stats.queue_name
 ORDER BY stats.queue_name;
