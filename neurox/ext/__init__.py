"""Extensions at the edges of a network: MessengerIn/Out, the built-in inputs and outputs, streams to
learn from, datasets. How to write one:
docs/extensions.md."""
from ..brain import maintenance_children, modulator_children, self_reshaper_children
from ..neuron import Topology
from ..supervisor_tree import ChildSpec
from ._api import (BUILT_IN as BUILT_IN, Extension as Extension,
                   InputExtension as InputExtension, OutputExtension as OutputExtension, SampleInput as SampleInput,
                   extension_class as extension_class, outputs_endpoint as outputs_endpoint)
from ._client import AskError as AskError, MessengerClient as MessengerClient
from ._datasets import (MISSING as MISSING, TASKS as TASKS, Dataset as Dataset, DatasetError as DatasetError,
                        check_learnable as check_learnable, digits as digits, load_dataset as load_dataset)
from ._messenger_in import MessengerIn as MessengerIn
from ._messenger_out import MessengerOut as MessengerOut, decode_outputs as decode_outputs
from ._origin import Origin as Origin
from ._pipes import Pipe as Pipe
from ._samples import (InputError as InputError, Sample as Sample, TargetSpace as TargetSpace,
                       encode_text as encode_text, parse_sample as parse_sample, parse_vector as parse_vector,
                       sample_records as sample_records)
from ._scaling import (MODES as SCALE_MODES, ScaleConfig as ScaleConfig, Scaler as Scaler,
                       ScalingError as ScalingError, scale_config as scale_config)
from ._settings import ExtensionError as ExtensionError, Setting as Setting
from ._stream import (RUN_BATCH as RUN_BATCH, RUN_WINDOW as RUN_WINDOW, Feed as Feed, Stream as Stream,
                      StreamProgress as StreamProgress)

PRELOAD = ("neurox.ext._api", "neurox.ext._messenger_in", "neurox.ext._messenger_out")


def messenger_children(data_dir: str, timeout_ms: int = 5000, bind: list[str] = (),
                       topology: Topology | None = None) -> list[dict]:
    """MessengerOut and MessengerIn as children of a network's root (after the layers); the topology's
    ``[input]`` table, if given, is checked here (ScalingError, a TopologyError), before any process starts."""
    if topology is not None:
        scale_config(topology.input)
    return [MessengerOut.child_spec("messenger_out", {"data_dir": data_dir}),
            MessengerIn.child_spec("messenger_in", {"data_dir": data_dir, "timeout_ms": timeout_ms,
                                                    "bind": list(bind)})]


def extension_children(topology: Topology, data_dir: str) -> list[dict]:
    """The topology's ``[[extension]]`` processes, as children of the network's root.

    Each line is checked against its extension's settings here, before any process starts:
    ExtensionError (a TopologyError) names the extension and every setting that is wrong.
    """
    specs = []
    for extension in topology.extensions:
        name = extension["name"]
        module = BUILT_IN.get(extension["module"], extension["module"])
        cls = extension_class(module)
        settings = cls.configure({**extension, "module": module}, name, topology)
        specs.append(cls.child_spec(name, {**settings, "data_dir": data_dir}, modules=[module]))
    return specs


def network_children(topology: Topology, data_dir: str, host: str | None = None,
                     **messenger_options) -> list[dict]:
    """Everything beside the layers, on the front host: MessengerOut, MessengerIn, the topology's
    extensions, its regions' neuromodulators and, if it asks for them, its self-reshaper and -- unless
    it runs on another host (``[maintenance] host``) -- its maintenance (sleep)."""
    return (messenger_children(data_dir, topology=topology, **messenger_options) + extension_children(topology, data_dir)
            + modulator_children(topology, data_dir) + self_reshaper_children(topology, data_dir)
            + maintenance_children(topology, data_dir, host))
