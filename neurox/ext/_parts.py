"""The parts ``ext`` plugs into a network (``neurox.parts``): the messengers and the ``[[extension]]``
processes, with the functions that list their root children."""
from __future__ import annotations

from ..neuron import Part, Topology, assemble, front_only, root_ids
from ._api import BUILT_IN, extension_class
from ._messenger_in import MessengerIn
from ._messenger_out import MessengerOut
from ._scaling import scale_config
from ._text import text_encoder


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
    text_encoder(topology)  # a [text] table with a mistake is refused here too
    specs = []
    for extension in topology.extensions:
        name = extension["name"]
        module = BUILT_IN.get(extension["module"], extension["module"])
        cls = extension_class(module)
        settings = cls.configure({**extension, "module": module}, name, topology)
        specs.append(cls.child_spec(name, {**settings, "data_dir": data_dir}, modules=[module]))
    return specs


def check_extensions(topology: Topology) -> None:
    """Each ``[[extension]]`` has a module and a unique name that no layer, region or root worker has."""
    taken = {*(layer.name for layer in topology.layers), *topology.supervised_regions(), *root_ids()}
    for extension in topology.extensions:
        name, module = extension.get("name"), extension.get("module")
        if not isinstance(name, str) or not name or "/" in name or name in taken:
            raise ValueError(f"extension name {name!r} must be a unique id without '/' "
                             f"(not a layer or region name, nor one of {', '.join(root_ids())})")
        if not isinstance(module, str) or not module:
            raise ValueError(f"extension {name!r} needs a 'module'")
        taken.add(name)


def _messengers(topology: Topology, data_dir: str, host: str | None, options: dict) -> list[dict]:
    return front_only(lambda t, d: messenger_children(d, topology=t, **options))(topology, data_dir, host, options)


MESSENGERS = Part("messengers", sections=("input",), reserves=("messenger_in", "messenger_out"), children=_messengers)
"""MessengerOut and MessengerIn, on the front host; the ``[input]`` table is how MessengerIn scales."""
EXTENSIONS = Part("extensions", sections=("extension",), check=check_extensions, requires=("messengers",),
                  children=front_only(lambda topology, data_dir: extension_children(topology, data_dir)),
                  paths=lambda topology: [f"root/{e.get('name')}" for e in topology.extensions])
"""The topology's ``[[extension]]`` processes, on the front host; they feed through MessengerIn."""


def network_children(topology: Topology, data_dir: str, host: str | None = None,
                     **messenger_options) -> list[dict]:
    """Everything beside the layers that runs on ``host``: every part's root children (``neurox.parts``),
    assembled in start order by ``neurox.neuron.assemble``."""
    return assemble(topology, data_dir, host, **messenger_options)
