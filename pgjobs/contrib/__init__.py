"""Integrations: ``pgjobs.contrib.django``, ``pgjobs.contrib.fastapi``."""
