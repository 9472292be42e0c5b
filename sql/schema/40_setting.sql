-- Tunables the views read: a setting of the session, role or database when
-- set (SET pgjobs.stats_window = '1 day'; ALTER DATABASE app SET ...), else
-- the default given here.
CREATE FUNCTION pgjobs.setting(p_name text, p_default text)
    RETURNS text
    LANGUAGE sql
    STABLE
AS $$
    SELECT coalesce(nullif(current_setting(p_name, true), ''), p_default);
$$;
