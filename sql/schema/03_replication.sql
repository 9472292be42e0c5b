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
