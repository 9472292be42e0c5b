"""The database: which one, connections to it, pgjobs' SQL and its schema.

``connections`` (URLs, connection options, opening connections), ``connector``
(procrastinate's connector pointed at that database), ``connector_info`` (what
pgjobs needs to know about any connector an App is given), ``queries`` (the
one module that runs pgjobs' SQL from ``sql/queries``), ``schema`` (alembic
migrations), ``roles`` (least-privilege roles), ``embedded`` (the default
PostgreSQL from PyPI) and ``resources`` (where ``sql/`` and ``migrations/`` are).
"""
