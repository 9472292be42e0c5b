"""No models: pgjobs' tables are migrated by its own alembic revisions (see
apps.py). The module exists so ``post_migrate`` is sent to this app."""
