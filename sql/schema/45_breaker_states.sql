-- Circuit breaker states without their last error text.
CREATE VIEW pgjobs.breaker_states AS
SELECT breaker.name,
       breaker.state,
       breaker.failure_count,
       breaker.failure_threshold,
       breaker.opened_at,
       breaker.reopens_at
  FROM pgjobs.breakers AS breaker;
