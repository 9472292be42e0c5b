-- name: demo_create_orders --
-- The demo's own business table (an application would have its own).
CREATE TABLE IF NOT EXISTS pgjobs_demo_orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    confirmed_at timestamptz
);

-- name: demo_insert_order --
INSERT INTO pgjobs_demo_orders (customer) VALUES (%(customer)s) RETURNING id;

-- name: demo_confirm_order --
UPDATE pgjobs_demo_orders SET confirmed_at = now() WHERE id = %(order_id)s;

-- name: demo_order_summary --
SELECT o.id, o.customer, o.confirmed_at IS NOT NULL AS confirmed,
       (SELECT count(*) FROM procrastinate_jobs j
         WHERE j.task_name = %(task_name)s
           AND (j.args ->> 'order_id')::bigint = o.id) AS jobs
  FROM pgjobs_demo_orders o
 WHERE o.id = ANY(%(order_ids)s)
 ORDER BY o.id;
