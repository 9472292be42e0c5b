DROP FUNCTION pgjobs.breaker_record(text, boolean, integer, interval, integer, text);
DROP FUNCTION pgjobs.breaker_acquire(text, integer, interval, integer);
DROP FUNCTION pgjobs.retry_failed_job(bigint);
DROP FUNCTION pgjobs.reschedule_job(bigint, timestamptz);
DROP FUNCTION pgjobs.fail_job_attempt(
    bigint, text, text, text, timestamptz, integer, character varying,
    character varying, boolean, interval);
DROP TRIGGER pgjobs_dead_letter_failed_job ON procrastinate_jobs;
DROP FUNCTION pgjobs.dead_letter_failed_job();
DROP TABLE pgjobs.breakers;
DROP TABLE pgjobs.job_progress;
DROP TABLE pgjobs.dead_letters;
DROP TABLE pgjobs.job_errors;
