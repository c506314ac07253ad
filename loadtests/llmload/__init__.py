"""Building blocks of the load tests.

Only ``users`` and ``hooks`` import locust, which monkey-patches the standard library with gevent
on import; every other module stays importable from pytest and ``run.py``.
"""
