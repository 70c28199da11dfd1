"""Derived seeds: the same in every process and version (resumed runs and shards depend on it), distinct per place."""

from __future__ import annotations

import random
import subprocess
import sys

from ec2er_utils import seeds
from ec2er_utils.paths import REPO_ROOT


def test_values_are_fixed_across_versions():
    # Generated data sets were drawn with these values: a change here changes what every seed produces, and a run
    # resumed after the change would continue with other draws than it started with.
    assert seeds.derived_seed(0, "attributes", 3) == 1814078956506944339
    assert seeds.sampling_seed(7, "turn 3 client") == 1771320651
    assert seeds.rng_for(5, "options", "i1").random() == 0.28382119284921503


def test_the_same_in_a_fresh_interpreter_with_another_hash_salt():
    script = "from ec2er_utils import seeds; print(seeds.derived_seed(3, 'options', 'item-7', ('EU', 2)))"
    printed = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                             cwd=REPO_ROOT, env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}).stdout
    assert int(printed) == seeds.derived_seed(3, "options", "item-7", ("EU", 2))


def test_each_place_gets_its_own_seed_whatever_was_drawn_before():
    places = [(seed, kind, index) for seed in (0, 1) for kind in ("attributes", "options") for index in range(50)]
    assert len({seeds.derived_seed(*place) for place in places}) == len(places)
    assert seeds.derived_seed(1, "1") != seeds.derived_seed(1, 1)  # keys are told apart by type, not only text
    expected = seeds.rng_for(9, "options", 4).random()
    random.random(), seeds.rng_for(9, "options", 3).random()  # other draws in between change nothing
    assert seeds.rng_for(9, "options", 4).random() == expected != seeds.rng_for(9, "options", 5).random()


def test_sampling_seeds_fit_a_signed_32_bit_server_seed():
    values = [seeds.sampling_seed(seed, "step", n) for seed in range(3) for n in range(200)]
    assert all(0 <= value < 2**31 - 1 for value in values)
    assert len(set(values)) == len(values)
