"""A network of neurons as one supervised tree: a supervisor per layer, and one per brain region.

``Network`` writes the live topology into its data directory, builds the tree and starts it through a
:class:`~neurox.supervisor_tree.Tree`. Under the root: a supervisor per plain layer (``root/LAYER``),
and a supervisor per region (``root/REGION``, at the place of the region's first layer, with its own
strategy) whose children are its layers' supervisors (``root/REGION/LAYER``), in network order; each
layer supervisor holds one worker per neuron. The reshaper and any extension processes such as
MessengerIn/Out follow the layers.
With ``host`` it is that host's part of a network spread over hosts: only the layers placed there
(the reshaper only on the front host), and ``tcp.json`` in the run directory for the links to the
other hosts (see ``_placement``).
"""
from __future__ import annotations

import os

from ..runtime import write_tcp_plan
from ..supervisor_tree import ChildSpec, Tree, control_endpoint, root_args
from ._data_dir import Hold, claim
from ._endpoints import messenger_in_endpoint, topology_path
from ._placement import front_host, layers_on, tcp_exports, tcp_routes
from ._reshaper import Reshaper
from ._topology import Topology
from ._tree_specs import layer_children

PRELOAD = ("neurox.neuron._process", "neurox.neuron._reshaper", "neurox.supervisor_tree._supervisor",
           "neurox.runtime._bus")


def live_topology(topology: Topology, data_dir: str, resume: bool) -> Topology:
    """The shape a network in ``data_dir`` starts with: the one it had (``resume``), else ``topology``."""
    claim(data_dir)
    live = topology_path(data_dir)
    return Topology.load(live) if resume and os.path.exists(live) else topology


class Network:
    """A running network on this host. ``resume=True`` keeps the shape already in ``data_dir``. It holds
    the data directory from here until :meth:`stop` (DataDirError if another network runs from it)."""

    def __init__(self, topology: Topology, data_dir: str, extensions: list[ChildSpec | dict] = (),
                 run_dir: str | None = None, resume: bool = False, preload: tuple[str, ...] = (),
                 host: str | None = None, keys_dir: str | None = None):
        self.data_dir = os.path.abspath(data_dir)
        self.hold = Hold(self.data_dir)
        try:
            topology = live_topology(topology, self.data_dir, resume)
            topology.save(topology_path(self.data_dir))
            self.topology = topology
            self.host = host
            children = layer_children(topology, layers_on(topology, host), self.data_dir)
            if host is None or host == front_host(topology):
                children.append(Reshaper.child_spec("reshaper", {"data_dir": self.data_dir}))
            # The layers, the reshaper and the extensions do not depend on one another to start (links are
            # connected lazily), so they are all started at once; they still stop in reverse order.
            self.tree = Tree(root_args([*children, *extensions], start_concurrently=True), run_dir=run_dir,
                             preload=(*PRELOAD, *preload))
            if host is not None:
                write_tcp_plan(self.tree.run_dir, host, keys_dir, tcp_exports(topology, host),
                               tcp_routes(topology, host))
        except BaseException:
            self.hold.release()
            raise

    def start(self) -> "Network":
        self.tree.start()
        return self

    def stop(self):
        try:
            return self.tree.stop()
        finally:
            self.hold.release()

    def __enter__(self) -> "Network":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def run_dir(self) -> str:
        return self.tree.run_dir

    @property
    def control(self) -> str:
        return self.tree.control

    @property
    def events(self) -> str:
        return self.tree.events

    @property
    def reshaper(self) -> str:
        """Control endpoint of the reshaper (see ``Reshaping``)."""
        return control_endpoint(self.run_dir, "root/reshaper")

    @property
    def messenger_in(self) -> str:
        return messenger_in_endpoint(self.run_dir)
