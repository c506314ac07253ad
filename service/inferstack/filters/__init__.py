"""Tenancy filters: API keys, rate limits, accounting and budgets, the response cache.

The gateway uses ``Tenancy`` (``admit`` / ``finish``), built by ``open_tenancy``; the rest is
exported for tests, the bench and the ``inferstack keys`` command. Integration contract: README.md in this folder.
"""

from ..config import CacheSettings, LimitSettings, TenancySettings
from .auth import Principal
from .keys import KeyEntry, KeyRing, generate_key, hash_key, parse_keys, write_dev_keyfile
from .lifespan import open_tenancy
from .limits import LimitExceeded
from .tenancy import Admission, Tenancy

__all__ = [
    "Admission",
    "CacheSettings",
    "KeyEntry",
    "KeyRing",
    "LimitExceeded",
    "LimitSettings",
    "Principal",
    "Tenancy",
    "TenancySettings",
    "generate_key",
    "hash_key",
    "open_tenancy",
    "parse_keys",
    "write_dev_keyfile",
]
