-- name: roles_list --
-- The pgjobs group roles: whether they exist in the cluster, whether this
-- database granted them their privileges, and their members.
SELECT wanted.name,
       group_role.oid IS NOT NULL AS exists,
       group_role.oid IS NOT NULL
           AND has_schema_privilege(group_role.oid, 'pgjobs', 'USAGE') AS granted,
       coalesce(array_agg(member.rolname::text ORDER BY member.rolname)
                    FILTER (WHERE member.rolname IS NOT NULL),
                '{}') AS members
  FROM unnest(%(names)s::text[]) WITH ORDINALITY AS wanted(name, position)
  LEFT JOIN pg_roles AS group_role ON group_role.rolname = wanted.name
  LEFT JOIN pg_auth_members AS membership ON membership.roleid = group_role.oid
  LEFT JOIN pg_roles AS member ON member.oid = membership.member
 GROUP BY wanted.name, wanted.position, group_role.oid
 ORDER BY wanted.position;
