"""Soak, short: half a minute of steady learning and requests; RSS, fds and threads stay put."""
import pytest

from _netutil import running_network
from neurox.bench._soak import soak
from neurox.neuron import load_topology


@pytest.mark.timeout(180)
def test_steady_load_grows_no_memory_fds_or_threads(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        result = soak(network, seconds=24.0, warm_up=10.0)
    assert result["samples"] > 1000 and result["requests_ok"] > 100 and result["lost"] == 0, result
    assert result["request_errors"] == 0, result
    assert result["fds_after"] <= result["fds_before"] + 4, result
    assert result["threads_after"] <= result["threads_before"] + 2, result
    assert result["rss_growth_mib"] < 12, result  # the caches may still be filling in the first half
    assert result["rss_growth_second_half_mib"] < 4, result  # a leak grows in both halves
