"""What ``inferstack.filters`` exports is deliberate: this fails when the public surface drifts."""

import inferstack.filters as filters


def test_exported_names() -> None:
    assert sorted(filters.__all__) == [
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
    assert all(hasattr(filters, name) for name in filters.__all__)
