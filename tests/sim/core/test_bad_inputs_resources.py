"""The batch-memory check sizes the run's largest batch: a batch size above the events asked is no refusal."""

from __future__ import annotations

import pytest

from mambah.errors import ConfigError
from sim.core.pipeline import Pipeline
from sim.core.resources import check_batch_memory

#: 401 particles per event (the decay of the sweep: 400 pi0), about 800 kB an event
GEN = '[[passes]]\nkind = "generator"\ndecay = "B+ -> ' + "pi0 " * 400 + '"\n'


def test_few_events_with_the_default_batch_size_fit() -> None:
    # before: 200 events with batch_size 25 000 were refused as "a batch of 25,000 events needs about 19.7 GiB"
    few = Pipeline.from_toml("[run]\nevents = 200\nbatch_size = 25000\n" + GEN)
    check_batch_memory(few, memory=8 * 2**30)
    many = Pipeline.from_toml("[run]\nevents = 100000\nbatch_size = 25000\n" + GEN)
    with pytest.raises(ConfigError, match=r"^a batch of 25,000 events needs about"):
        check_batch_memory(many, memory=8 * 2**30)
    capped = Pipeline.from_toml("[run]\nevents = 20000\nbatch_size = 25000\n" + GEN)
    with pytest.raises(ConfigError, match=r"^a batch of 20,000 events needs about"):  # the batch the run makes
        check_batch_memory(capped, memory=8 * 2**30)
