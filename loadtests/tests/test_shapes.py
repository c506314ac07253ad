import pytest

from llmload.shapes import build_shape, parse_seconds


def test_steady_holds_its_users_then_ends() -> None:
    shape = build_shape({"name": "steady", "users": 4, "duration": 30, "ramp": 2})
    assert shape.tick(0) == (4, 2.0)
    assert shape.tick(29.9) == (4, 2.0)
    assert shape.tick(30) is None


def test_step_climbs_in_equal_stages_to_its_peak() -> None:
    shape = build_shape({"name": "step", "users": 40, "steps": 4, "duration": "4m"})
    assert [shape.tick(t)[0] for t in (0, 61, 121, 181)] == [10, 20, 30, 40]
    assert shape.tick(240) is None and shape.peak_users == 40


def test_spike_jumps_and_comes_back() -> None:
    shape = build_shape(
        {"name": "spike", "users": 2, "spike_users": 20, "duration": 60, "spike_at": 20, "spike_seconds": 10}
    )
    assert [shape.tick(t)[0] for t in (0, 19, 20, 29, 30, 59)] == [2, 2, 20, 20, 2, 2]
    assert shape.tick(20)[1] == 20  # all spike users arrive within a second


def test_soak_defaults_to_an_hour_with_a_gentle_ramp() -> None:
    shape = build_shape({"name": "soak", "users": 30})
    assert shape.duration == 3600 and shape.tick(0) == (30, 0.5)


def test_a_shorter_duration_scales_the_spike_with_it() -> None:
    spec = {"name": "spike", "users": 2, "spike_users": 8, "duration": "12m", "spike_at": "4m", "spike_seconds": "2m"}
    shape = build_shape(spec, duration=12)
    assert [stage.until for stage in shape.stages] == [4, 6, 12]


def test_users_override_sets_the_peak_and_keeps_the_proportions() -> None:
    spec = {"name": "spike", "users": 16, "spike_users": 96, "duration": 60, "spike_at": 20, "spike_seconds": 10}
    shape = build_shape(spec, users=12)
    assert [stage.users for stage in shape.stages] == [2, 12, 2]


def test_users_and_duration_override_the_profile() -> None:
    shape = build_shape({"name": "step", "users": 40, "steps": 4, "duration": 400}, users=8, duration=40)
    assert shape.duration == 40 and shape.peak_users == 8


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "ramp", "users": 1, "duration": 1}, "expected one of steady, step, spike, soak"),
        ({"name": "steady", "users": 0, "duration": 1}, "users: expected an integer >= 1"),
        ({"name": "steady", "users": 1, "duration": 0}, "duration: must be > 0"),
        ({"name": "steady", "users": 1, "duration": 9, "stepz": 3}, "unknown keys"),
        ({"name": "spike", "users": 1, "duration": 10, "spike_at": 8, "spike_seconds": 5}, "must end before"),
    ],
)
def test_bad_shapes_are_rejected(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_shape(spec)


def test_durations_take_units() -> None:
    assert [parse_seconds(v, "d") for v in (90, "90s", "10m", "2h", "1.5m")] == [90, 90, 600, 7200, 90]
    for bad in ("soon", -1, True, None):
        with pytest.raises(ValueError, match="d: expected seconds"):
            parse_seconds(bad, "d")
