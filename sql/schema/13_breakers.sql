-- Circuit breakers shared by every worker. The row is the state; every
-- transition happens under the row lock inside the functions below.
CREATE TABLE pgjobs.breakers (
    name text PRIMARY KEY,
    state text NOT NULL DEFAULT 'closed'
        CHECK (state IN ('closed', 'open', 'half_open')),
    failure_threshold integer NOT NULL CHECK (failure_threshold > 0),
    recovery_window interval NOT NULL,
    success_threshold integer NOT NULL CHECK (success_threshold > 0),
    failure_count integer NOT NULL DEFAULT 0,
    success_count integer NOT NULL DEFAULT 0,
    trial_count integer NOT NULL DEFAULT 0,
    opened_at timestamptz,
    reopens_at timestamptz,
    last_failure_at timestamptz,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- May a call protected by breaker p_name go ahead? Closed: yes, without a
-- lock or a write. Open: no until reopens_at, then the first caller turns it
-- half-open. Half-open: up to p_success_threshold trial calls; trials that
-- never report back are forgotten after the recovery window.
CREATE FUNCTION pgjobs.breaker_acquire(
    p_name text,
    p_failure_threshold integer,
    p_recovery_window interval,
    p_success_threshold integer
)
    RETURNS TABLE (allowed boolean, state text, retry_at timestamptz)
    LANGUAGE plpgsql
AS $$
DECLARE
    _breaker pgjobs.breakers;
BEGIN
    SELECT * INTO _breaker FROM pgjobs.breakers AS b WHERE b.name = p_name;
    IF NOT FOUND THEN
        INSERT INTO pgjobs.breakers
               (name, failure_threshold, recovery_window, success_threshold)
        VALUES (p_name, p_failure_threshold, p_recovery_window, p_success_threshold)
        ON CONFLICT (name) DO NOTHING;
        RETURN QUERY SELECT true, 'closed'::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF _breaker.state = 'closed' THEN
        RETURN QUERY SELECT true, 'closed'::text, NULL::timestamptz;
        RETURN;
    END IF;

    SELECT * INTO _breaker FROM pgjobs.breakers AS b
     WHERE b.name = p_name FOR UPDATE;
    IF _breaker.state = 'open' AND _breaker.reopens_at > now() THEN
        RETURN QUERY SELECT false, 'open'::text, _breaker.reopens_at;
    ELSIF _breaker.state = 'open' THEN
        UPDATE pgjobs.breakers AS b
           SET state = 'half_open', trial_count = 1, success_count = 0,
               reopens_at = now() + p_recovery_window, updated_at = now()
         WHERE b.name = p_name;
        RETURN QUERY SELECT true, 'half_open'::text, NULL::timestamptz;
    ELSIF _breaker.state = 'half_open'
          AND (_breaker.trial_count < p_success_threshold
               OR _breaker.reopens_at <= now()) THEN
        UPDATE pgjobs.breakers AS b
           SET trial_count = CASE WHEN b.reopens_at <= now()
                                  THEN 1 ELSE b.trial_count + 1 END,
               success_count = CASE WHEN b.reopens_at <= now()
                                    THEN 0 ELSE b.success_count END,
               reopens_at = now() + p_recovery_window, updated_at = now()
         WHERE b.name = p_name;
        RETURN QUERY SELECT true, 'half_open'::text, NULL::timestamptz;
    ELSIF _breaker.state = 'half_open' THEN
        -- Trials are running: look again shortly.
        RETURN QUERY SELECT false, 'half_open'::text,
            least(_breaker.reopens_at, now() + interval '2 seconds');
    ELSE
        RETURN QUERY SELECT true, _breaker.state, NULL::timestamptz;
    END IF;
END;
$$;

-- Report the outcome of a protected call. Returns the state after it and
-- whether this call changed it. A success on a closed breaker without
-- failures writes nothing.
CREATE FUNCTION pgjobs.breaker_record(
    p_name text,
    p_success boolean,
    p_failure_threshold integer,
    p_recovery_window interval,
    p_success_threshold integer,
    p_error text
)
    RETURNS TABLE (state text, changed boolean)
    LANGUAGE plpgsql
AS $$
DECLARE
    _breaker pgjobs.breakers;
    _new_state text;
BEGIN
    IF p_success THEN
        SELECT * INTO _breaker FROM pgjobs.breakers AS b WHERE b.name = p_name;
        IF NOT FOUND OR (_breaker.state = 'closed' AND _breaker.failure_count = 0) THEN
            RETURN QUERY SELECT coalesce(_breaker.state, 'closed'), false;
            RETURN;
        END IF;
    ELSE
        INSERT INTO pgjobs.breakers
               (name, failure_threshold, recovery_window, success_threshold)
        VALUES (p_name, p_failure_threshold, p_recovery_window, p_success_threshold)
        ON CONFLICT (name) DO NOTHING;
    END IF;

    SELECT * INTO _breaker FROM pgjobs.breakers AS b
     WHERE b.name = p_name FOR UPDATE;
    IF p_success THEN
        IF _breaker.state = 'closed' THEN
            _new_state := 'closed';
            UPDATE pgjobs.breakers AS b SET failure_count = 0, updated_at = now()
             WHERE b.name = p_name;
        ELSIF _breaker.state = 'half_open'
              AND _breaker.success_count + 1 >= p_success_threshold THEN
            _new_state := 'closed';
            UPDATE pgjobs.breakers AS b
               SET state = 'closed', failure_count = 0, success_count = 0,
                   trial_count = 0, opened_at = NULL, reopens_at = NULL,
                   updated_at = now()
             WHERE b.name = p_name;
        ELSIF _breaker.state = 'half_open' THEN
            _new_state := 'half_open';
            UPDATE pgjobs.breakers AS b
               SET success_count = b.success_count + 1, updated_at = now()
             WHERE b.name = p_name;
        ELSE
            -- A call that started before the breaker opened: no evidence.
            _new_state := _breaker.state;
        END IF;
    ELSE
        IF _breaker.state = 'half_open'
           OR (_breaker.state = 'closed'
               AND _breaker.failure_count + 1 >= p_failure_threshold) THEN
            _new_state := 'open';
            UPDATE pgjobs.breakers AS b
               SET state = 'open', failure_count = b.failure_count + 1,
                   success_count = 0, trial_count = 0, opened_at = now(),
                   reopens_at = now() + p_recovery_window,
                   last_failure_at = now(), last_error = p_error,
                   failure_threshold = p_failure_threshold,
                   recovery_window = p_recovery_window,
                   success_threshold = p_success_threshold, updated_at = now()
             WHERE b.name = p_name;
        ELSE
            _new_state := _breaker.state;
            UPDATE pgjobs.breakers AS b
               SET failure_count = b.failure_count + 1,
                   last_failure_at = now(), last_error = p_error,
                   updated_at = now()
             WHERE b.name = p_name;
        END IF;
    END IF;
    RETURN QUERY SELECT _new_state, _new_state IS DISTINCT FROM _breaker.state;
END;
$$;
