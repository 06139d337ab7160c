"""The reshaper: changes the shape of a running network, and is the only writer of its topology.

It runs as a worker under the network's root and answers reshaping requests on its control socket
(``root/reshaper``). Each change follows the same order so that no packet is lost on the way:
first write the new topology (a neuron started now reads its links from it), then start new
neurons (seeded from their siblings, like replacements), then tell the receiving side of each new
link to expect it, then tell the sending side to use it; removal runs the other way round and
drains a neuron (waits until it holds no join and no kept pass) before it is stopped. Packets
caught between two steps are never dropped: a join waits at most its deadline for a part that will
not come and goes on without it. Every change is appended to ``reshape.log`` in the data directory
and published as a ``reshaped`` event. The first and last layer each hold one neuron: the start
node and the end node, where MessengerIn and MessengerOut attach. Neurons start and stop through their
layer's supervisor wherever it is in the tree (``Topology.supervisor_path``); a layer added with a
``region`` setting starts under that region's supervisor (which starts with it if the region is new),
and removing a region's last layer removes the region's supervisor.

A network spread over hosts is reshaped the same way, neuron by neuron and link by link (``_spread``):
every host adopts each new shape (its copy of the topology and its ``tcp.json``), a neuron of another
host starts and stops through that host's control gateway, by its layer supervisor's path. Adding or
removing a layer there is refused (``spread_over_hosts``): a layer's place is a host's, pushed with a
new topology.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter

import msgspec
import numpy as np
import tomli_w

from ..runtime import ControlError, Process, Reply, call, given, typed_ops
from ..supervisor_tree import SupervisorClient, control_endpoint
from ._activations import check_activation
from ._endpoints import neuron_control, topology_path
from ._frames import array_from_wire, array_to_wire
from ._init import init_of
from ._parts import child_id, registered
from ._placement import front_host, host_of
from ._requests import FLAGS, SETTABLE
from ._reshaper_ops import (RESHAPER_ARGS, AddLayer, AddNeuron, LinkArgs, RemoveLayer, RemoveNeuron,
                             SetLearning, SetSettings, WidenLayer)
from ._spread import Hosts
from ._state import NeuronStore
from ._tree_specs import neuron_spec, start_site, stop_site
from ._topology import Layer, Topology, TopologyError
from ._widening import rows_of, widened_columns, widened_rows

DRAIN_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 30.0
LIVE_SETTINGS = ("activation", "learning_rate", "flush_interval_s", "join_timeout_ms")
READ_ONLY_OPS = ("status", "metrics", "topology", "export")
ONE_HOST_OPS = ("add_layer", "remove_layer", "widen_layer")
"""What a network spread over hosts is not reshaped by: a layer's host is placement, not a live change
(and a widened neuron restarts through its own host's supervisor and disk)."""


class Reshaper(Process):
    """A callback module of the process behaviour whose every op is a control call (``handle_call``)."""

    target = "neurox.neuron._reshaper:run_reshaper"

    def init(self, args: dict, env: dict) -> dict:
        self.data_dir = args["data_dir"]
        self.run_dir = env["run_dir"]
        self.topology = Topology.load(topology_path(self.data_dir))
        self.hosts = Hosts(self.ctx, self.run_dir, CALL_TIMEOUT_S) if len(self.topology.hosts) > 1 else None
        self.started_t = time.time()
        self.changes: Counter[str] = Counter()
        """Changes made, per op."""
        self.refused: Counter[str] = Counter()
        """Changes refused, per error (``bad_topology``, ``fixed_layer``, ``not_found``, ``failed``, ...)."""
        handlers = {
            "status": lambda r: {"pid": os.getpid(), "uptime_s": time.time() - self.started_t,
                                 "shape": [len(layer.neurons) for layer in self.topology.layers]},
            "metrics": lambda r: {"changes": dict(self.changes), "refused": dict(self.refused), **self.bad.counts()},
            "topology": lambda r: self.topology.to_dict(),
            "export": lambda r: tomli_w.dumps(self.topology.to_toml_dict()),
            "add_neuron": self.add_neuron, "remove_neuron": self.remove_neuron,
            "add_link": self.add_link, "remove_link": self.remove_link,
            "add_layer": self.add_layer, "remove_layer": self.remove_layer,
            "set_settings": self.set_settings, "set_learning": self.set_learning, "widen_layer": self.widen_layer,
        }
        self.handlers.update(typed_ops(RESHAPER_ARGS, {op: self._guarded(op, h) for op, h in handlers.items()}))
        return {"neurons": len(self.topology.neurons())}

    def _guarded(self, op: str, handler):
        """The handler with topology errors turned into error replies, and its changes and refusals counted
        (``metrics``) and its changes recorded."""
        def run(request: dict):
            try:
                result = self._run(op, handler, request)
            except Reply as reply:
                self.refused[reply.error] += 1
                raise
            if op not in READ_ONLY_OPS:
                self.changes[op] += 1
                self._record(op, request, result)
            return result
        return run

    def _run(self, op: str, handler, request: dict):
        """What ``handler`` answers ``request``; a refusal raised as a Reply."""
        if self.hosts is not None and op in ONE_HOST_OPS:
            raise Reply("spread_over_hosts", f"this network spans hosts: {op} places a layer on a host; push a "
                                             "new topology instead (ansible/reshape.yml)")
        try:
            return handler(request)
        except TopologyError as exc:
            raise Reply("bad_topology", str(exc)) from None
        except ControlError as exc:
            raise Reply("failed", f"a process did not go along: {exc}") from None

    def _record(self, op: str, request: dict, result) -> None:
        entry = {"t": time.time(), "op": op, **msgspec.to_builtins(request)}
        with open(os.path.join(self.data_dir, "reshape.log"), "a") as f:
            f.write(json.dumps(entry) + "\n")
        self.emit("reshaped", op=op, request=entry, result=result,
                         shape=[len(layer.neurons) for layer in self.topology.layers])

    def _follow_parts(self, old: Topology) -> None:
        """The root children of the parts (``_parts``) follow the new shape: a child the new shape no longer
        has is stopped; one it gains is started where the network runs that part (a region's modulator
        ends with its last layer and starts with its first, docs/brain.md)."""
        changes = []
        for part in registered():
            if part.children is not None:
                before = {child_id(spec) for spec in part.children(old, self.data_dir, None, {})}
                after = part.children(self.topology, self.data_dir, None, {})
                if before != {child_id(spec) for spec in after}:
                    changes.append((before, after))
        if not changes:
            return
        root = self._supervisor("root")
        running = {child["id"] for child in root.which_children()}
        for before, after in changes:
            for child in before - {child_id(spec) for spec in after}:
                if child in running:
                    root.terminate_child(child)
                    root.delete_child(child)
            if before & running:
                for spec in after:
                    if child_id(spec) not in before:
                        root.start_child(spec)

    # -- talking to the processes ----------------------------------------------------------------
    def _neuron(self, neuron_id: str, op: str, **args):
        return call(self.ctx, neuron_control(self.run_dir, self.topology, neuron_id), op, CALL_TIMEOUT_S, **args)

    def _supervisor(self, path: str) -> SupervisorClient:
        return SupervisorClient(control_endpoint(self.run_dir, path), self.ctx, CALL_TIMEOUT_S)

    def _save(self, topology: Topology) -> None:
        topology.validate()
        topology.save(topology_path(self.data_dir))
        self.topology = topology
        if self.hosts is not None:
            self.hosts.adopt(topology)

    def _remote_host(self, layer_name: str) -> str | None:
        """The host of a layer when it is not this one's (a network spread over hosts), else None."""
        host = host_of(self.topology, layer_name)
        return host if self.hosts is not None and host != front_host(self.topology) else None

    def _layer_supervisor(self, layer_name: str) -> SupervisorClient:
        """A layer's supervisor, here or through its host's gateway."""
        path, host = self.topology.supervisor_path(layer_name), self._remote_host(layer_name)
        return self._supervisor(path) if host is None else self.hosts.supervisor(self.topology, host, path)

    def _data_dir_of(self, layer_name: str) -> str:
        """The data directory of a layer's host, where its neurons keep their state and read the shape."""
        host = self._remote_host(layer_name)
        return self.data_dir if host is None else self.hosts.data_dirs[host]

    def _connect(self, links: list[tuple[str, str]], started: tuple[str, ...] = ()) -> None:
        """Receivers first (they will wait for the new part), then senders.

        Neurons in ``started`` were just started and read these links from the topology already.
        """
        for src, dst in links:
            if dst not in started:
                self._neuron(dst, "add_link", direction="in", peer=src, width=self.topology.width_of(src))
        for src, dst in links:
            if src not in started:
                self._neuron(src, "add_link", direction="out", peer=dst)

    def _disconnect(self, links: list[tuple[str, str]]) -> None:
        """Senders first (nothing new goes out), then receivers (they stop waiting for it)."""
        for src, dst in links:
            self._neuron(src, "remove_link", direction="out", peer=dst)
        for src, dst in links:
            self._neuron(dst, "remove_link", direction="in", peer=src)

    def _drain(self, neuron_id: str) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            metrics = self._neuron(neuron_id, "metrics")
            if not (metrics["pending_joins"] or metrics["pending_gradients"] or metrics["kept"]):
                return
            time.sleep(0.01)

    def _layer_arg(self, request, key: str = "layer") -> Layer:
        name = getattr(request, key)
        if not isinstance(name, str):
            raise Reply("bad_request", f"'{key}' must be a layer name")
        return self.topology.layer_named(name)

    def _inner_layer(self, layer: Layer) -> None:
        if layer is self.topology.layers[0] or layer is self.topology.layers[-1]:
            raise Reply("fixed_layer", f"{layer.name} holds the start or end node; its neuron count is fixed")

    # -- operations ------------------------------------------------------------------------------
    def add_neuron(self, request: AddNeuron) -> dict:
        layer = self._layer_arg(request)
        self._inner_layer(layer)
        topology = Topology.from_dict(self.topology.to_dict())
        new_layer = topology.layer_named(layer.name)
        neuron_id = topology.new_neuron_id(new_layer)
        links = sibling_links(topology, new_layer.neurons, neuron_id)
        new_layer.neurons.append(neuron_id)
        topology.links.extend(links)
        self._save(topology)
        supervisor = self._layer_supervisor(layer.name)
        try:
            started = supervisor.start_child(neuron_spec(neuron_id, self._data_dir_of(layer.name), seed_from_siblings=True))
        finally:
            supervisor.close()
        self._connect(links, started=(neuron_id,))
        return {"id": neuron_id, "pid": started["pid"], "layer": layer.name}

    def remove_neuron(self, request: RemoveNeuron) -> dict:
        neuron_id = request.id
        layer = self.topology.layer_of(neuron_id)
        self._inner_layer(layer)
        if len(layer.neurons) == 1:
            raise Reply("last_neuron", f"{neuron_id} is the last neuron of {layer.name}; remove the layer instead")
        inbound = [(s, d) for s, d in self.topology.links if d == neuron_id]
        outbound = [(s, d) for s, d in self.topology.links if s == neuron_id]
        for src, _ in inbound:
            if len(self.topology.outputs_of(src)) == 1:
                raise Reply("would_orphan", f"{src} would have no output left")
        for _, dst in outbound:
            if len(self.topology.inputs_of(dst)) == 1:
                raise Reply("would_orphan", f"{dst} would have no input left")
        for src, dst in inbound:
            self._neuron(src, "remove_link", direction="out", peer=dst)
        self._drain(neuron_id)
        for src, dst in outbound:
            self._neuron(dst, "remove_link", direction="in", peer=src)
        supervisor = self._layer_supervisor(layer.name)
        try:
            supervisor.terminate_child(neuron_id)
            supervisor.delete_child(neuron_id)
        finally:
            supervisor.close()
        topology = Topology.from_dict(self.topology.to_dict())
        topology.layer_named(layer.name).neurons.remove(neuron_id)
        topology.links = [link for link in topology.links if neuron_id not in link]
        self._save(topology)
        return {"id": neuron_id, "layer": layer.name}

    def add_link(self, request: LinkArgs) -> dict:
        src, dst = request.src, request.dst
        topology = Topology.from_dict(self.topology.to_dict())
        if (src, dst) in topology.links:
            raise Reply("already_linked", f"{src} -> {dst} exists")
        topology.links.append((src, dst))
        topology.explicit_links = True
        self._save(topology)
        self._connect([(src, dst)])
        return {"from": src, "to": dst}

    def remove_link(self, request: LinkArgs) -> dict:
        src, dst = request.src, request.dst
        if (src, dst) not in self.topology.links:
            raise Reply("not_found", f"no link {src} -> {dst}")
        topology = Topology.from_dict(self.topology.to_dict())
        topology.links.remove((src, dst))
        topology.explicit_links = True
        topology.validate()
        self._disconnect([(src, dst)])
        self._save(topology)
        return {"from": src, "to": dst}

    def add_layer(self, request: AddLayer) -> dict:
        after = self._layer_arg(request, "after")
        if after is self.topology.layers[-1]:
            raise Reply("fixed_layer", "a layer cannot follow the end node's layer")
        name, count, settings = request.name, request.neurons, request.settings
        topology = Topology.from_dict(self.topology.to_dict())
        index = topology.layers.index(topology.layer_named(after.name)) + 1
        layer = Layer(name, [f"{name}.n{k}" for k in range(count)], dict(settings), count)
        before, following = topology.layers[index - 1], topology.layers[index]
        topology.layers.insert(index, layer)
        old = [(s, d) for s, d in topology.links if s in before.neurons and d in following.neurons]
        new = [(s, n) for s in before.neurons for n in layer.neurons] + \
              [(n, d) for n in layer.neurons for d in following.neurons]
        topology.links = [link for link in topology.links if link not in old] + new
        before_change = self.topology
        self._save(topology)
        self._follow_parts(before_change)
        supervisor, spec = start_site(topology, name, self.data_dir)
        self._supervisor(supervisor).start_child(spec)
        self._connect(new, started=tuple(layer.neurons))
        self._disconnect(old)
        return {"layer": name, "neurons": layer.neurons}

    def remove_layer(self, request: RemoveLayer) -> dict:
        layer = self._layer_arg(request, "name")
        self._inner_layer(layer)
        index = self.topology.layers.index(layer)
        before, following = self.topology.layers[index - 1], self.topology.layers[index + 1]
        bridge = [(s, d) for s in before.neurons for d in following.neurons]
        self._connect(bridge)
        inbound = [(s, d) for s, d in self.topology.links if d in layer.neurons]
        outbound = [(s, d) for s, d in self.topology.links if s in layer.neurons]
        for src, dst in inbound:
            self._neuron(src, "remove_link", direction="out", peer=dst)
        for neuron_id in layer.neurons:
            self._drain(neuron_id)
        for src, dst in outbound:
            self._neuron(dst, "remove_link", direction="in", peer=src)
        supervisor_path, child = stop_site(self.topology, layer.name)
        supervisor = self._supervisor(supervisor_path)
        supervisor.terminate_child(child)
        supervisor.delete_child(child)
        topology = Topology.from_dict(self.topology.to_dict())
        topology.layers = [l for l in topology.layers if l.name != layer.name]
        topology.links = [l for l in topology.links if l[0] not in layer.neurons and l[1] not in layer.neurons] + bridge
        before_change = self.topology
        self._save(topology)
        self._follow_parts(before_change)
        return {"layer": layer.name}

    def widen_layer(self, request: WidenLayer) -> dict:
        """More units for every neuron of a layer (not the end's: its units are the answer's), keeping the
        network's function (``_widening``): with the new width in the topology, each neuron restarts from
        a fresh database and is given its old weights with new columns and its own settings (a learning
        rate set on it alone, paused or frozen, as it was); then each neuron it feeds
        restarts (it restores its weights, with fresh rows for the resized link) and is given its old
        rows for the old units and zero rows for the new ones."""
        layer, units = self._layer_arg(request), request.units
        if layer is self.topology.layers[-1]:
            raise Reply("fixed_layer", f"{layer.name} holds the end node: its units are the answer's")
        old = self.topology.width_of(layer.neurons[0])
        if units <= old:
            raise Reply("bad_request", f"widen_layer: units must be above {layer.name}'s {old} (widening only)")
        neurons = list(layer.neurons)
        receivers = [n for n in self.topology.neurons() if any((s, n) in self.topology.links for s in neurons)]
        before = {n: self._neuron(n, "get_params") for n in neurons + receivers}
        own = {n: own_settings(self._neuron(n, "status")) for n in neurons}
        topology = Topology.from_dict(self.topology.to_dict())
        topology.layer_named(layer.name).settings["units"] = units
        self._save(topology)
        rng = np.random.default_rng([topology.seed, units, *layer.name.encode()])
        for neuron_id in neurons:
            self._restart(neuron_id, fresh=True)
            self._set_to(neuron_id, *widened_columns(array_from_wire(before[neuron_id]["weights"]),
                                                     array_from_wire(before[neuron_id]["bias"]), units,
                                                     init_of(topology.settings_of(neuron_id)), rng))
            self._neuron(neuron_id, "set_params", **own[neuron_id])  # its own settings: a fresh start forgot them
        for dst in receivers:
            self._restart(dst)
            now = self._neuron(dst, "get_params")
            weights, layout = array_from_wire(now["weights"]), [(p, now["widths"][p]) for p in now["inputs"]]
            old_weights = array_from_wire(before[dst]["weights"])
            old_layout = [(p, before[dst]["widths"][p]) for p in before[dst]["inputs"]]
            for src in (s for s in neurons if (s, dst) in topology.links):
                weights = widened_rows(weights, layout, src, rows_of(old_weights, old_layout, src))
            self._set_to(dst, weights, array_from_wire(now["bias"]), now)
        return {"layer": layer.name, "units": units, "was": old, "neurons": neurons}

    def _restart(self, neuron_id: str, fresh: bool = False) -> None:
        """Stop a neuron politely and start it again, reading the topology anew: from its saved state, or
        (``fresh``) from a new database (one saved at another width cannot be restored)."""
        layer = self.topology.layer_of(neuron_id).name
        supervisor = self._layer_supervisor(layer)
        try:
            supervisor.terminate_child(neuron_id)
            if not fresh:
                supervisor.restart_child(neuron_id)
                return
            supervisor.delete_child(neuron_id)
            NeuronStore.discard(os.path.join(self._data_dir_of(layer), "neurons", neuron_id))
            supervisor.start_child(neuron_spec(neuron_id, self._data_dir_of(layer)))
        finally:
            supervisor.close()

    def _set_to(self, neuron_id: str, weights: np.ndarray, bias: np.ndarray, now: dict | None = None) -> None:
        """A neuron's weights and bias made these as they stood when read (``now``, else read here), by
        adding the difference (``add``): what it learnt since the read is not thrown away."""
        now = now or self._neuron(neuron_id, "get_params")
        self._neuron(neuron_id, "set_params", add=True,
                     weights=array_to_wire(weights - array_from_wire(now["weights"])),
                     bias=array_to_wire(bias - array_from_wire(now["bias"])))

    def set_settings(self, request: SetSettings) -> dict:
        settings = given(request.settings)
        if not settings:
            raise Reply("bad_request", f"set_settings: settings must set some of {LIVE_SETTINGS} (units change by widen_layer)")
        if "activation" in settings:
            check_activation(settings["activation"])
        topology = Topology.from_dict(self.topology.to_dict())
        if request.neuron is not None:
            topology.layer_of(request.neuron)  # an unknown id is an error reply
            targets = [request.neuron]
        else:
            layer = topology.layer_named(self._layer_arg(request).name)
            layer.settings.update(settings)
            targets = list(layer.neurons)
            self._save(topology)
        for neuron_id in targets:
            self._neuron(neuron_id, "set_params", **settings)
        return {"neurons": targets, "settings": settings}

    def set_learning(self, request: SetLearning) -> dict:
        learning = request.learning
        for neuron_id in self.topology.neurons():
            self._neuron(neuron_id, "set_params", learning=learning)
        return {"learning": learning}


def sibling_links(topology: Topology, siblings: list[str], neuron_id: str) -> list[tuple[str, str]]:
    """A new neuron's links: from every neuron feeding its siblings, to every neuron they feed -- the
    layers before and after when fully linked, its own pathway in a region wired by its template."""
    sources = {src for src, dst in topology.links if dst in siblings}
    targets = {dst for src, dst in topology.links if src in siblings}
    return [(src, neuron_id) for src in topology.neurons() if src in sources] + \
           [(neuron_id, dst) for dst in topology.neurons() if dst in targets]


run_reshaper = Reshaper.main
"""Process entry point (``Reshaper.target``)."""


def own_settings(status: dict) -> dict:
    """The live settings and flags of a neuron's ``status``, as ``set_params`` takes them back."""
    return {key: status[key] for key in (*SETTABLE, *FLAGS) if key in status}
