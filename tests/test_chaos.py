"""Chaos, short: every fault kind an operator meets, one after another, while neurox.Clients send
requests and the network learns. Nothing is lost, answered twice or orphaned, and the network is back."""
import argparse

import pytest

from neurox.bench import _chaos

FAULTS = "neurons,layer,sigstop,messengers,launcher,root,disk,sigterm"


@pytest.mark.timeout(420)
def test_every_fault_kind_loses_duplicates_and_orphans_nothing():
    result = _chaos.run(argparse.Namespace(faults=FAULTS, fault_seconds=2.0, load=0, rate=40.0, clients=2,
                                           epochs=1, recovery=4.0, eval_samples=500, seed=0))
    faults = result["faults"]
    assert list(faults) == FAULTS.split(","), faults
    for name, fault in faults.items():
        assert fault["injected"] >= 1, (name, fault)
        assert fault["sent"] > 0 and fault["lost"] == 0, (name, fault)
        assert fault["answered"] + fault["errors"] == fault["sent"], (name, fault)
    for name in ("launcher", "root", "sigterm"):
        assert faults[name]["network_restarts"] >= 1, (name, faults[name])  # the host brought it back
    assert result["lost"] == 0 and result["duplicates"] == 0 and result["orphans"] == 0, result
    assert result["healthy_after_faults"], result
    assert result["accuracy_before"] > 0.3, result  # it learnt before the faults (chance is 0.1)
    assert result["accuracy_60s"] > 0.3, result  # and is learning again after them
