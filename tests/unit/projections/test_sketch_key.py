"""The sketch's inlined bin key is ddsketch's LogarithmicMapping.key, value for value."""

from __future__ import annotations

import json
import math
import random

import pytest

from streams.sketch import _MAPPING, _MIN_POSITIVE, Sketch, _key, add_to_data


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


def _values(seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [rng.lognormvariate(4, 2) for _ in range(5_000)] + [0.0, 1e-300, 2.0, 2.0, 1e9]
    values += [rng.uniform(0, 1e-3) for _ in range(200)] + [float(2**n) for n in range(-60, 60)]
    values += [_MIN_POSITIVE, _MIN_POSITIVE * 1.0001, 1e300]
    rng.shuffle(values)
    return values


def test_the_plain_data_add_equals_the_sketch_add() -> None:
    """``add_to_data`` (its bin key, low and high inline) ends where ``Sketch.add`` does."""
    sketch, data = Sketch(), Sketch().to_data()
    for value in _values(5):
        sketch.add(value)
        Sketch.add_to_data(data, value)
    assert Sketch.from_data(data) == sketch


def test_the_compiled_add_equals_the_python_one() -> None:
    """``streams.sketch.add_to_data`` (compiled by ``make install``) leaves the same data, to the
    bit and the type (ints included: they take the Python method), and refuses the same."""
    assert add_to_data is not Sketch.add_to_data, (
        "the compiled sketch add is not built: run `make install`"
        " (or `.venv/bin/python -m infra.build_ext`)"
    )
    values: list[float] = [*_values(7), 3, 0, 12]
    python, compiled = Sketch().to_data(), Sketch().to_data()
    for value in values:
        Sketch.add_to_data(python, value)
        add_to_data(compiled, value)
    assert json.dumps(python, sort_keys=True) == json.dumps(compiled, sort_keys=True)
    for bad in (-1.0, math.nan, -1):
        for add in (Sketch.add_to_data, add_to_data):
            with pytest.raises(ValueError, match="non-negative"):
                add(Sketch().to_data(), bad)
