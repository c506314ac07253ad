"""The fleet catalog (fleet/models, fleet/adapters): validation and the generator of what it deploys.

`python -m inferstack_fleet generate [--check]`; see fleet/README.md. Developer tooling, not in the
gateway image.
"""
