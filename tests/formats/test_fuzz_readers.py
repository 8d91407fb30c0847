"""Every file reader, fed mutated copies of a valid file, returns or raises InputError (the CLI's one
line) and nothing else, within a time limit and without allocating what a corrupt length asks for.

The seeds and mutations live in ``fuzz/readers.py``; ``fuzz/run.py`` runs the same property for longer.
"""

from __future__ import annotations

import resource

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.readers import READERS, huge_cases, outcome, seed, strategy

NAMES = list(READERS)
EXAMPLES = 60  # per reader here; fuzz/run.py runs thousands


@pytest.mark.parametrize("name", NAMES)
def test_the_seed_is_valid(name, tmp_path):
    assert outcome(name, seed(name)[READERS[name].target], tmp_path).startswith("ok")


@pytest.mark.parametrize("name", NAMES)
def test_mutated_files_raise_only_input_error(name, tmp_path_factory):
    work = tmp_path_factory.mktemp(name)
    counter = [0]

    @settings(max_examples=EXAMPLES, deadline=5000, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy(name))
    def prop(data):
        counter[0] += 1
        outcome(name, data, work / str(counter[0]))  # raises on anything but InputError or a hang

    prop()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", NAMES)
def test_huge_length_fields_allocate_nothing_large(name, tmp_path):
    seed(name)
    outcome(name, seed(name)[READERS[name].target], tmp_path / "warm")  # imports and caches first
    before = _peak_mib()
    seen = set()
    for i, data in enumerate(huge_cases(name, span=64)):
        seen.add(outcome(name, data, tmp_path / str(i)))
    assert len(seen) >= 1
    assert _peak_mib() - before < 200, f"{name}: peak RSS grew by {_peak_mib() - before:.0f} MiB"
