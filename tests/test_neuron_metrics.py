"""A neuron's metrics follow its weights: the figures of its weights are computed again only when the
weights change (new weights, an update), and then they are the new weights' figures (real processes)."""
import numpy as np
import pytest

from _netutil import neuron_call, params, running_network
from neurox.ext import Client, digits
from neurox.neuron import load_topology
from neurox.neuron._frames import array_to_wire

pytestmark = pytest.mark.usefixtures("no_stray_processes")


def weight_figures(network, neuron_id: str) -> tuple[dict, dict]:
    metrics = neuron_call(network, neuron_id, "metrics")
    return metrics["weights"], metrics["link_rms"]


@pytest.mark.timeout(60)
def test_the_weight_figures_of_the_metrics_follow_new_weights_and_updates(tmp_path):
    with running_network(load_topology(), tmp_path / "data") as network:
        figures, rms = weight_figures(network, "L1.n0")
        w, _ = params(network, "L1.n0")
        assert figures["mean"] == pytest.approx(float(w.mean()), abs=1e-6)
        assert weight_figures(network, "L1.n0") == (figures, rms)  # nothing changed: the same figures

        new = np.linspace(-1.0, 1.0, w.size, dtype=np.float32).reshape(w.shape)
        neuron_call(network, "L1.n0", "set_params", weights=array_to_wire(new))
        figures, rms = weight_figures(network, "L1.n0")
        assert (figures["min"], figures["max"]) == (pytest.approx(-1.0), pytest.approx(1.0))
        assert figures["histogram"] == np.histogram(new, bins=10)[0].tolist()
        assert rms == {"L0.n0": pytest.approx(float(np.sqrt(np.mean(new ** 2))), rel=1e-5)}

        client = Client(network.messenger_in)
        try:
            sample = digits()
            for i in range(5):
                assert client.ask(vector=sample.features[i].tolist(), target=int(sample.targets[i]))["ok"]
        finally:
            client.close()
        learnt, _ = params(network, "L1.n0")
        assert not np.array_equal(learnt, new), "the asks were learnt from"
        figures, _ = weight_figures(network, "L1.n0")
        assert figures["mean"] == pytest.approx(float(learnt.mean()), abs=1e-6)
        assert figures["std"] == pytest.approx(float(learnt.std()), abs=1e-6)
