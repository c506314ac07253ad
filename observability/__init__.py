"""Observability for inferstack: dashboards and Prometheus rules as code, proven on live data.

Sources live in ``rules_src/`` and ``dashboards_src/``; ``python -m observability.generate`` writes
``rules/*.yaml`` and ``dashboards/*.json`` (committed, checked up to date by the tests).
"""
