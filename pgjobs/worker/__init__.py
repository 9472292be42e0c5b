"""The worker: claiming jobs, running them, recording outcomes, riding out outages.

``worker`` (pgjobs' procrastinate ``Worker`` subclass: claims and slots),
``executor`` (running one job), ``completer`` (writing outcomes), ``running``
(loading an app and running a worker: ``pgjobs worker``), ``listening``
(LISTEN or polling), ``outages`` and ``query_errors`` (database trouble in
the worker's loops), ``interruptions`` (deploys), ``reconcile`` (failovers),
``middleware``, ``progress``, ``sync_threads`` and ``event_loop``.
"""
