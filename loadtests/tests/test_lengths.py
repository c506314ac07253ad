import random
import statistics

import pytest

from llmload.lengths import parse_length


def test_fixed_and_uniform() -> None:
    rng = random.Random(1)
    assert parse_length(64, "x").sample(rng) == 64
    uniform = parse_length({"dist": "uniform", "min": 2, "max": 4}, "x")
    assert {uniform.sample(rng) for _ in range(200)} == {2, 3, 4}


def test_lognormal_has_its_median_and_stays_clamped() -> None:
    rng = random.Random(7)
    length = parse_length({"dist": "lognormal", "median": 200, "sigma": 0.9, "min": 8, "max": 1000}, "x")
    draws = [length.sample(rng) for _ in range(5000)]
    assert 180 <= statistics.median(draws) <= 220
    assert min(draws) >= 8 and max(draws) == 1000  # the long tail hits the clamp


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("long", "expected a number or a mapping"),
        (0, ">= 1"),
        ({"dist": "zipf", "median": 3}, "expected lognormal or uniform"),
        ({"median": 10, "mean": 3}, "unknown keys"),
        ({"dist": "uniform", "min": 5, "max": 2}, "min 5 > max 2"),
        ({"median": 10, "min": 20, "max": 30}, "min <= median <= max"),
    ],
)
def test_bad_specs_name_the_field(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_length(spec, "scenarios.chat.prompt_words")
    assert "scenarios.chat.prompt_words" in str(error.value)
