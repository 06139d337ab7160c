"""Extensions at the edges of a network: MessengerIn/Out, streams to learn from, datasets."""
from ..neuron import Topology, modulator_children, self_reshaper_children
from ..supervisor_tree import ChildSpec
from ._api import (EXTENSION_TARGET, Extension as Extension, InputExtension as InputExtension,
                   OutputExtension as OutputExtension, outputs_endpoint as outputs_endpoint)
from ._client import AskError as AskError, MessengerClient as MessengerClient
from ._datasets import (Dataset as Dataset, DatasetError as DatasetError, digits as digits,
                        load_dataset as load_dataset)
from ._messenger_in import MESSENGER_IN_TARGET, encode_text as encode_text
from ._messenger_out import MESSENGER_OUT_TARGET, decode_outputs as decode_outputs
from ._maintenance import maintenance_children as maintenance_children
from ._origin import Origin as Origin
from ._stream import Stream as Stream, StreamProgress as StreamProgress

PRELOAD = ("neurox.ext._api", "neurox.ext._messenger_in", "neurox.ext._messenger_out")


def messenger_children(data_dir: str, timeout_ms: int = 5000, bind: list[str] = ()) -> list[ChildSpec]:
    """MessengerOut and MessengerIn as children of a network's root (after the layers)."""
    return [ChildSpec("messenger_out", MESSENGER_OUT_TARGET, {"data_dir": data_dir}, "permanent", 5000, "worker",
                      ("neurox.ext._messenger_out",)),
            ChildSpec("messenger_in", MESSENGER_IN_TARGET, {"data_dir": data_dir, "timeout_ms": timeout_ms,
                                                           "bind": list(bind)},
                      "permanent", 5000, "worker", ("neurox.ext._messenger_in",))]


def extension_children(topology: Topology, data_dir: str) -> list[ChildSpec]:
    """The topology's ``[[extension]]`` processes, as children of the network's root."""
    specs = []
    for extension in topology.extensions:
        settings = {k: v for k, v in extension.items() if k != "name"}
        specs.append(ChildSpec(extension["name"], EXTENSION_TARGET, {**settings, "data_dir": data_dir},
                               "permanent", 5000, "worker", (extension["module"],)))
    return specs


def network_children(topology: Topology, data_dir: str, **messenger_options) -> list[ChildSpec]:
    """Everything beside the layers: MessengerOut, MessengerIn, the topology's extensions, its regions'
    neuromodulators and, if it asks for them, its self-reshaper and its maintenance (sleep)."""
    return (messenger_children(data_dir, **messenger_options) + extension_children(topology, data_dir)
            + modulator_children(topology, data_dir) + self_reshaper_children(topology, data_dir)
            + maintenance_children(topology, data_dir))
