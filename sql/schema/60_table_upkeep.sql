-- Queue tables churn: every job is inserted, updated twice and deleted by
-- retention, so dead rows pile up far faster than in an ordinary table.
-- Autovacuum's defaults wait for 20% of a table to be dead (200,000 rows at
-- 1M finished jobs) and claims walk those dead rows meanwhile. These
-- thresholds vacuum at 1% (inserts at 5%) and analyze at 2%.

ALTER TABLE procrastinate_jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE pgjobs.event_log SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);
