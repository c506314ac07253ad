from inferstack.config import OutlierDetection
from inferstack.upstream.endpoint import Endpoint
from inferstack.upstream.outlier import OutlierDetector


def make(n: int) -> tuple[OutlierDetector, list[Endpoint], list[Endpoint]]:
    ejected: list[Endpoint] = []
    detector = OutlierDetector(
        OutlierDetection(consecutive_failures=3, base_ejection=5, max_ejection=12, max_ejected_percent=50),
        ejected.append,
    )
    return detector, [Endpoint(f"http://e{i}", healthy=True) for i in range(n)], ejected


def test_consecutive_failures_eject_for_longer_each_time_up_to_the_cap() -> None:
    detector, (a, b), ejected = make(2)
    now = 100.0
    assert not detector.failure(a, [a, b], now)
    assert not detector.failure(a, [a, b], now)
    assert detector.failure(a, [a, b], now)
    assert a.ejected_until == now + 5 and not a.available(now + 1) and a.available(now + 5)
    # Once it is back, the count starts again from zero: three more failures, not two.
    assert [detector.failure(a, [a, b], now + 10) for _ in range(3)] == [False, False, True]
    assert a.ejected_until == now + 10 + 10
    for _ in range(3):
        detector.failure(a, [a, b], now + 30)
    assert a.ejected_until == now + 30 + 12  # capped at max_ejection
    assert ejected == [a, a, a]


def test_a_success_resets_the_count() -> None:
    detector, (a, b), _ = make(2)
    detector.failure(a, [a, b], 0)
    detector.failure(a, [a, b], 0)
    detector.success(a)
    # Back to zero, not to one: two more failures are not yet three in a row.
    assert not detector.failure(a, [a, b], 0)
    assert not detector.failure(a, [a, b], 0)
    assert detector.failure(a, [a, b], 0)


def test_never_more_than_the_share_of_replicas_but_always_one() -> None:
    detector, endpoints, ejected = make(3)
    for endpoint in endpoints:
        for _ in range(3):
            detector.failure(endpoint, endpoints, 0)
    # 50 % of 3: the first may go (one is always allowed), a second would make 67 %.
    assert ejected == [endpoints[0]]
    assert not detector.failure(endpoints[1], endpoints, 0)  # still over the share: not ejected, says so
    detector2, (only,), ejected2 = make(1)
    for _ in range(3):
        detector2.failure(only, [only], 0)
    assert ejected2 == [only]


def test_the_share_is_exact_at_its_boundary() -> None:
    # 50 % of 4 replicas: two may be out at once (2 x 100 = 50 x 4), a third may not.
    detector, endpoints, ejected = make(4)
    for endpoint in endpoints:
        for _ in range(3):
            detector.failure(endpoint, endpoints, 0)
    assert ejected == endpoints[:2]
