"""Chaos, short: SIGKILL neurons every 250 ms and layer supervisors every 2 s while clients send
requests and the network learns. Nothing is lost, duplicated or orphaned."""
import argparse

import pytest

from neurox.bench import _chaos


@pytest.mark.timeout(240)
def test_chaos_loses_duplicates_and_orphans_nothing():
    result = _chaos.run(argparse.Namespace(seconds=8.0, requests=800, kill_every=0.25, supervisor_every=2.0,
                                           recovery=5.0, clients=4, epochs=3))
    assert result["requests"] == 800
    assert result["lost"] == 0 and result["duplicates"] == 0 and result["orphans"] == 0, result
    assert result["replied"] + result["errors"] == 800, result
    assert result["neuron_kills"] >= 20 and result["supervisor_kills"] >= 1, result
    assert result["accuracy_before"] > 0.5, result  # it learnt before the chaos (chance is 0.1)
