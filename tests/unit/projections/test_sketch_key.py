"""The sketch's inlined bin key is ddsketch's LogarithmicMapping.key, value for value."""

from __future__ import annotations

import random

from streams.sketch import _MAPPING, _MIN_POSITIVE, _key


def test_the_inlined_key_equals_the_mapping_key() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(4, 2) for _ in range(20_000)]
    values += [rng.uniform(0, 1e-3) for _ in range(2_000)] + [
        rng.uniform(1e6, 1e12) for _ in range(2_000)
    ]
    values += [_MIN_POSITIVE * 1.0001, 1.0, 2.0, 0.5, 1e-300, 1e300]
    values += [float(2**n) for n in range(-60, 60)]
    for value in values:
        assert _key(value) == int(_MAPPING.key(value)), value


def test_the_plain_data_add_equals_the_sketch_add() -> None:
    """``add_to_data`` (its bin key, low and high inline) ends where ``Sketch.add`` does."""
    from streams.sketch import Sketch

    rng = random.Random(5)
    values = [rng.lognormvariate(4, 2) for _ in range(5_000)] + [0.0, 1e-300, 2.0, 2.0, 1e9]
    rng.shuffle(values)
    sketch, data = Sketch(), Sketch().to_data()
    for value in values:
        sketch.add(value)
        Sketch.add_to_data(data, value)
    assert Sketch.from_data(data) == sketch
