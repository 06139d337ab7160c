"""The shape of a network: layers of neurons, the links between them, and their settings.

Written by people as TOML (see ``docs/topology.md`` and ``neurox/neuron/diamond.toml``), kept while
the network runs as ``topology.json`` in its data directory -- the one source of truth every neuron
reads its links from when it starts, and that live reshaping rewrites (atomically) before it tells
the neurons concerned. Without explicit ``[[link]]`` tables, adjacent layers are fully connected.
"""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, replace

from ..supervisor_tree import NameClash, check_names
from ._activations import check_activation
from ._hosts import PlacementError, check_placement
from ._modulation import DEFAULT_TRANSMITTER, TRANSMITTERS
from ._plasticity import DEFAULT_PLASTICITY, LOCAL_RULES, PLASTICITY
from ._staleness import DEFAULT_GROUP, DEFAULT_RULE, check_settings

INPUT = "input"
"""Link source name of the outside world feeding the first layer."""
OUTPUT = "output"
"""Link destination name of MessengerOut after the last layer."""
POLICIES = ("replace", "restore")
LAYER_SETTINGS = ("units", "activation", "learning_rate", "policy", "flush_interval_s", "join_timeout_ms",
                  "transmitter", "plasticity", "region", "strategy", "context", "staleness", "staleness_group")
LAYER_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
"""How a layer's supervisor restarts its neurons (``strategy``; one_for_one unless a region says otherwise)."""
DEFAULTS = {"units": 16, "activation": "tanh", "learning_rate": 0.05, "policy": "replace",
            "flush_interval_s": 1.0, "join_timeout_ms": 200, "transmitter": DEFAULT_TRANSMITTER,
            "plasticity": DEFAULT_PLASTICITY, "staleness": DEFAULT_RULE, "staleness_group": DEFAULT_GROUP}
DEFAULT_SUPERVISION = {"intensity": 50, "period_s": 5.0}
"""Per layer (and region) supervisor. Higher than Elixir's 3 in 5 s: a layer of many neurons under chaos
testing legitimately sees several deaths a second, and each is repaired in milliseconds."""
ROOT_WORKERS = ("reshaper", "self_reshaper", "maintenance", "maintenance_pool", "messenger_in", "messenger_out",
                "service")
"""Ids the network puts under its root beside the layers and regions (modulators are ``modulator.NAME``,
which no layer or region name can be, as those have no '.'; extensions are named by the topology)."""
DIAMOND_TOML = os.path.join(os.path.dirname(__file__), "diamond.toml")


class TopologyError(ValueError):
    """A topology that cannot be run; the message names the offending part."""


@dataclass
class Layer:
    name: str
    neurons: list[str]
    settings: dict = field(default_factory=dict)
    next_index: int = 0


@dataclass
class Topology:
    name: str
    input_width: int
    layers: list[Layer]
    links: list[tuple[str, str]]
    defaults: dict
    supervision: dict
    output: dict
    seed: int = 0
    explicit_links: bool = False
    extensions: list[dict] = field(default_factory=list)
    """``[[extension]]`` tables: name, module, and settings (see neurox/ext/_api.py)."""
    neurotransmitters: dict | None = None
    """The ``[neurotransmitters]`` table (None: absent): kinetics per region (see neurox.brain)."""
    hosts: dict = field(default_factory=dict)
    """``[hosts]``: host name -> address, for a network spread over hosts (see ``_placement``)."""
    self_reshaping: dict | None = None
    """The ``[self_reshaping]`` table (None: the network keeps the shape it is given; see ``_shaping``)."""
    maintenance: dict | None = None
    """The ``[maintenance]`` table (None: the network never sleeps; see ``_sleep``)."""
    region_flags: dict = field(default_factory=dict)
    """Region name -> its supervisor's flags (``strategy``, ``intensity``, ``period_s``): its template's,
    overridden by the topology's ``[region.NAME]`` table (see ``region_supervision``)."""
    input: dict = field(default_factory=dict)
    """The ``[input]`` table: how MessengerIn scales what comes in (``scale``, ``frozen_after``; checked
    and used by neurox.ext's ``_scaling``)."""

    # -- questions neurons and supervisors ask --------------------------------------------------
    def layer_of(self, neuron_id: str) -> Layer:
        for layer in self.layers:
            if neuron_id in layer.neurons:
                return layer
        raise TopologyError(f"unknown neuron {neuron_id!r}")

    def layer_named(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise TopologyError(f"unknown layer {name!r}; layers are {[l.name for l in self.layers]}")

    def settings_of(self, neuron_id: str) -> dict:
        """The layer's settings over the network's defaults (with the layer name added)."""
        layer = self.layer_of(neuron_id)
        return {**self.defaults, **layer.settings, "layer": layer.name}

    def width_of(self, node: str) -> int:
        return self.input_width if node == INPUT else int(self.settings_of(node)["units"])

    def inputs_of(self, neuron_id: str) -> list[str]:
        """Sources feeding ``neuron_id``, in network order (this fixes the row order of its weights)."""
        if neuron_id in self.layers[0].neurons:
            return [INPUT]
        sources = {src for src, dst in self.links if dst == neuron_id}
        return [n for n in self.neurons() if n in sources]

    def outputs_of(self, neuron_id: str) -> list[str]:
        if neuron_id in self.layers[-1].neurons:
            return [OUTPUT]
        targets = {dst for src, dst in self.links if src == neuron_id}
        return [n for n in self.neurons() if n in targets]

    def neurons(self) -> list[str]:
        return [n for layer in self.layers for n in layer.neurons]

    def siblings_of(self, neuron_id: str) -> list[str]:
        return [n for n in self.layer_of(neuron_id).neurons if n != neuron_id]

    def region_of_layer(self, layer: Layer) -> str:
        """A layer's region: its ``region`` setting, else the network's name."""
        return str(layer.settings.get("region", self.name))

    def modulated_regions(self) -> list[str]:
        """The regions that run a neuromodulator: all of them when the topology has a
        ``[neurotransmitters]`` table or any ``three_factor`` layer (which learns from dopamine), else none."""
        plasticities = [{**self.defaults, **layer.settings}.get("plasticity") for layer in self.layers]
        if self.neurotransmitters is None and "three_factor" not in plasticities:
            return []
        return list(dict.fromkeys(self.region_of_layer(layer) for layer in self.layers))

    # -- the supervision tree --------------------------------------------------------------------
    def supervising_region(self, layer_name: str) -> str | None:
        """The region whose supervisor holds the layer's supervisor (its ``region`` setting); None: the root."""
        region = self.layer_named(layer_name).settings.get("region")
        return None if region is None else str(region)

    def supervisor_path(self, layer_name: str) -> str:
        """Where a layer's supervisor is in the tree: ``root/REGION/LAYER``, or ``root/LAYER`` for a plain
        layer. Every address of a neuron's or a layer's process is derived from this."""
        region = self.supervising_region(layer_name)
        return f"root/{layer_name}" if region is None else f"root/{region}/{layer_name}"

    def supervised_regions(self) -> list[str]:
        """The regions that have a supervisor (some layer's ``region`` setting), in network order."""
        return list(dict.fromkeys(r for r in map(self.supervising_region, (l.name for l in self.layers)) if r))

    def region_layers(self, region: str) -> list[str]:
        """The layers a region's supervisor holds, in network order."""
        return [l.name for l in self.layers if self.supervising_region(l.name) == region]

    def region_supervision(self, region: str) -> dict:
        """A region supervisor's flags: its own (``region_flags``) over one_for_one and ``[supervision]``."""
        return {"strategy": "one_for_one", "intensity": int(self.supervision["intensity"]),
                "period_s": float(self.supervision["period_s"]), **self.region_flags.get(region, {})}

    def tree_paths(self) -> list[str]:
        """Every path this network puts in its supervision tree: supervisors, neurons (and their twins in
        the maintenance pool), the root's workers, modulators (``modulator.REGION``) and extensions."""
        supervisors = [f"root/{r}" for r in self.supervised_regions()] + \
                      [self.supervisor_path(layer.name) for layer in self.layers]
        neurons = [f"{self.supervisor_path(layer.name)}/{n}" for layer in self.layers for n in layer.neurons]
        twins = [f"root/maintenance_pool/{n}" for n in self.neurons()] if self.maintenance is not None else []
        root = [*ROOT_WORKERS, *(f"modulator.{r}" for r in self.modulated_regions()),
                *(str(e.get("name")) for e in self.extensions)]
        return ["root", *supervisors, *neurons, *twins, *(f"root/{name}" for name in root)]

    # -- changing the shape -------------------------------------------------------------------
    def new_neuron_id(self, layer: Layer) -> str:
        neuron_id = f"{layer.name}.n{layer.next_index}"
        layer.next_index += 1
        return neuron_id

    def full_links(self) -> list[tuple[str, str]]:
        """Every neuron linked to every neuron of the next layer."""
        return [(a, b) for upper, lower in zip(self.layers, self.layers[1:])
                for a in upper.neurons for b in lower.neurons]

    def fit_to_data(self, input_width: int, outputs: int, classification: bool) -> "Topology":
        """This topology resized to a dataset: its input width, and an output layer to match."""
        out = self.layers[-1]
        settings = {**out.settings, "units": outputs, "activation": "softmax" if classification else "linear"}
        layers = [*self.layers[:-1], replace(out, settings=settings)]
        output = dict(self.output) if classification else {"decode": "vector"}
        if classification and len(output.get("labels", [])) != outputs:
            output.pop("labels", None)
        return replace(self, input_width=input_width, layers=layers, output=output).validate()

    def validate(self) -> "Topology":
        if self.input_width <= 0:
            raise TopologyError("input_width must be positive")
        if not self.layers:
            raise TopologyError("a topology needs at least one layer")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise TopologyError(f"duplicate layer names in {names}")
        for layer in self.layers:
            if not layer.neurons:
                raise TopologyError(f"layer {layer.name!r} has no neurons")
            if "/" in layer.name or "." in layer.name:
                raise TopologyError(f"layer name {layer.name!r} may not contain '/' or '.'")
            settings = {**self.defaults, **layer.settings}
            unknown = set(layer.settings) - set(LAYER_SETTINGS) - {"host"}  # placement: see _placement
            if unknown:
                raise TopologyError(f"layer {layer.name!r}: unknown settings {sorted(unknown)}; known: {LAYER_SETTINGS}")
            try:
                check_activation(settings["activation"])
                check_settings(settings)
            except ValueError as exc:
                raise TopologyError(f"layer {layer.name!r}: {exc}") from None
            if settings["activation"] == "softmax" and layer is not self.layers[-1]:
                raise TopologyError(f"layer {layer.name!r}: softmax is only allowed in the output layer")
            if settings["policy"] not in POLICIES:
                raise TopologyError(f"layer {layer.name!r}: policy must be one of {POLICIES}")
            if int(settings["units"]) <= 0:
                raise TopologyError(f"layer {layer.name!r}: units must be positive")
            if settings.get("transmitter", DEFAULT_TRANSMITTER) not in TRANSMITTERS:
                raise TopologyError(f"layer {layer.name!r}: transmitter must be one of {list(TRANSMITTERS)}")
            if settings.get("plasticity", DEFAULT_PLASTICITY) not in PLASTICITY:
                raise TopologyError(f"layer {layer.name!r}: plasticity must be one of {list(PLASTICITY)}")
            if settings.get("strategy", "one_for_one") not in LAYER_STRATEGIES:
                raise TopologyError(f"layer {layer.name!r}: strategy must be one of {list(LAYER_STRATEGIES)}")
            if not 0.0 <= float(settings.get("context", 0.0)) < 1.0:
                raise TopologyError(f"layer {layer.name!r}: context must be in [0, 1)")
            region = settings.get("region")  # unset: the network's name, checked only if modulated
            if region is not None and (not isinstance(region, str) or not region or "/" in region or "." in region):
                raise TopologyError(f"layer {layer.name!r}: region must be a name without '/' or '.'")
        if len(self.layers[-1].neurons) != 1:
            raise TopologyError("the output layer must have exactly one neuron (the end node)")
        order = {n: i for i, n in enumerate(n for layer in self.layers for n in layer.neurons)}  # network order
        for src, dst in self.links:
            if src not in order or dst not in order:
                raise TopologyError(f"link {src} -> {dst} names an unknown neuron")
            if order[src] >= order[dst]:
                raise TopologyError(f"link {src} -> {dst} must go forward, to a later layer")
        from ..brain import ChemistryError, ShapingConfig, SleepConfig, region_chemistry  # step 2: the registry
        self._check_local_learning()
        self._check_regions()
        if not isinstance(self.neurotransmitters, (dict, type(None))):
            raise TopologyError("[neurotransmitters] must be a table")
        for region in self.modulated_regions():
            if not region or "/" in region:
                raise TopologyError(f"region {region!r} (a layer's region, or the network's name) needs a "
                                    f"neuromodulator, whose name must be non-empty and without '/'")
            try:
                region_chemistry(self.neurotransmitters or {}, region)
            except ChemistryError as exc:
                raise TopologyError(str(exc)) from None
        taken = set(names) | set(self.supervised_regions()) | set(ROOT_WORKERS)
        for extension in self.extensions:
            name, module = extension.get("name"), extension.get("module")
            if not isinstance(name, str) or not name or "/" in name or name in taken:
                raise TopologyError(f"extension name {name!r} must be a unique id without '/' "
                                    f"(not a layer or region name, nor one of {', '.join(ROOT_WORKERS)})")
            if not isinstance(module, str) or not module:
                raise TopologyError(f"extension {name!r} needs a 'module'")
            taken.add(name)
        try:
            check_names(self.tree_paths())
        except NameClash as exc:
            raise TopologyError(str(exc)) from None
        try:
            check_placement(self)
        except PlacementError as exc:
            raise TopologyError(str(exc)) from None
        fed = {dst for _, dst in self.links} | set(self.layers[0].neurons)
        feeding = {src for src, _ in self.links} | set(self.layers[-1].neurons)
        for neuron_id in self.neurons():
            if neuron_id not in fed:
                raise TopologyError(f"neuron {neuron_id} has no input link")
            if neuron_id not in feeding:
                raise TopologyError(f"neuron {neuron_id} has no output link")
        for table, config in ((self.self_reshaping, ShapingConfig), (self.maintenance, SleepConfig)):
            try:
                if table is not None:
                    config.from_table(table)
            except (TypeError, ValueError) as exc:
                raise TopologyError(str(exc)) from None
        return self

    def _check_regions(self) -> None:
        """A region's supervisor is a child of the root beside the plain layers and the workers, so its
        name must be none of theirs; its flags must be a supervisor's."""
        from ..brain import REGION_FLAGS  # step 2: the registry
        for region in self.supervised_regions():
            inside = set(self.region_layers(region))
            if region in {l.name for l in self.layers} - inside:
                raise TopologyError(f"region {region!r} has the name of a layer outside it; the region's "
                                    f"supervisor and that layer's would both be root/{region}")
            if region in ROOT_WORKERS:
                raise TopologyError(f"region {region!r}: the name is taken by a process under the root "
                                    f"({', '.join(ROOT_WORKERS)} are)")
        if not isinstance(self.region_flags, dict):
            raise TopologyError("[region] must be a table of tables, [region.NAME]")
        for region, flags in self.region_flags.items():
            if not isinstance(flags, dict) or set(flags) - set(REGION_FLAGS):
                raise TopologyError(f"[region.{region}] may set only {', '.join(REGION_FLAGS)}, got {flags!r}")
            if flags.get("strategy", "one_for_one") not in LAYER_STRATEGIES:
                raise TopologyError(f"[region.{region}]: strategy must be one of {list(LAYER_STRATEGIES)}")
            intensity, period = flags.get("intensity", 0), flags.get("period_s", 1.0)
            if not isinstance(intensity, int) or isinstance(intensity, bool) or intensity < 0:
                raise TopologyError(f"[region.{region}]: intensity must be a whole number >= 0")
            if not isinstance(period, (int, float)) or isinstance(period, bool) or period <= 0:
                raise TopologyError(f"[region.{region}]: period_s must be a positive number of seconds")

    def _check_local_learning(self) -> None:
        """A layer with a local rule sends no gradients upstream, so only local layers may feed it."""
        rule = {n: {**self.defaults, **layer.settings}.get("plasticity", DEFAULT_PLASTICITY)
                for layer in self.layers for n in layer.neurons}
        for src, dst in self.links:
            if rule[dst] in LOCAL_RULES and rule[src] not in LOCAL_RULES:
                raise TopologyError(f"link {src} -> {dst}: a {rule[dst]} neuron sends no gradients back, so it "
                                    f"cannot be fed by a backprop neuron (make {src}'s layer local too)")

    # -- reading and writing ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "input_width": self.input_width, "seed": self.seed,
                "defaults": self.defaults, "supervision": self.supervision, "output": self.output,
                "explicit_links": self.explicit_links, "extensions": self.extensions,
                "neurotransmitters": self.neurotransmitters, "hosts": self.hosts,
                "self_reshaping": self.self_reshaping, "maintenance": self.maintenance,
                "region": self.region_flags, "input": self.input,
                "layers": [{"name": l.name, "neurons": l.neurons, "settings": l.settings,
                            "next_index": l.next_index} for l in self.layers],
                "links": [list(link) for link in self.links]}

    @classmethod
    def from_dict(cls, data: dict, validate: bool = True) -> "Topology":
        layers = [Layer(l["name"], list(l["neurons"]), dict(l.get("settings", {})), l.get("next_index", 0))
                  for l in data["layers"]]
        topology = cls(data["name"], int(data["input_width"]), layers, [tuple(x) for x in data["links"]],
                       dict(data["defaults"]), dict(data["supervision"]), dict(data["output"]),
                       int(data.get("seed", 0)), bool(data.get("explicit_links", False)),
                       list(data.get("extensions", [])), data.get("neurotransmitters"), dict(data.get("hosts", {})),
                       data.get("self_reshaping"), data.get("maintenance"),
                       {name: dict(flags) for name, flags in data.get("region", {}).items()},
                       dict(data.get("input", {})))
        return topology.validate() if validate else topology

    def save(self, path: str) -> None:
        """Check, then write the live topology atomically (readers never see half a file)."""
        self.validate()
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f, separators=(",", ":"))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str, validate: bool = True) -> "Topology":
        """Read a live topology. Its writers validate it before they save it, so a reader that
        starts a thousand times (every neuron) may skip checking it again (``validate=False``)."""
        with open(path) as f:
            return cls.from_dict(json.load(f), validate)

    def to_toml_dict(self) -> dict:
        """The TOML document that recreates this topology (``neurox topology export``)."""
        doc = {"name": self.name, "input_width": self.input_width, "seed": self.seed,
               "defaults": self.defaults, "supervision": self.supervision, "output": self.output,
               "layer": [{"name": l.name, "neurons": len(l.neurons), **l.settings} for l in self.layers]}
        if set(self.links) != set(self.full_links()):
            doc["link"] = [{"from": a, "to": b} for a, b in self.links]
        if self.extensions:
            doc["extension"] = self.extensions
        if self.neurotransmitters is not None:
            doc["neurotransmitters"] = self.neurotransmitters
        if self.hosts:
            doc["hosts"] = self.hosts
        if self.self_reshaping is not None:
            doc["self_reshaping"] = self.self_reshaping
        if self.maintenance is not None:
            doc["maintenance"] = self.maintenance
        if self.input:
            doc["input"] = self.input
        regions = self.supervised_regions()  # a region whose last layer was removed keeps its flags, unexported
        flags = {name: table for name, table in self.region_flags.items() if table and name in regions}
        if flags:
            doc["region"] = flags
        return doc


def parse_topology(doc: dict) -> Topology:
    """A Topology from a parsed TOML document."""
    known = {"name", "input_width", "seed", "defaults", "supervision", "output", "layer", "link", "extension",
             "neurotransmitters", "hosts", "self_reshaping", "maintenance", "region", "input"}
    unknown = set(doc) - known
    if unknown:
        raise TopologyError(f"unknown top-level keys {sorted(unknown)}; known: {sorted(known)}")
    layer_docs = doc.get("layer")
    if not isinstance(layer_docs, list) or not layer_docs:
        raise TopologyError("a topology needs [[layer]] tables")
    defaults = {**DEFAULTS, **doc.get("defaults", {})}
    unknown = set(defaults) - set(LAYER_SETTINGS)
    if unknown:
        raise TopologyError(f"[defaults]: unknown settings {sorted(unknown)}; known: {LAYER_SETTINGS}")
    from ..brain import RegionError, expand_regions  # step 2: the registry
    try:
        regions = expand_regions(layer_docs, float(defaults["learning_rate"]))
    except (RegionError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise TopologyError(f"[[layer]] template: {exc}") from None
    if regions.links is not None and "link" in doc:
        raise TopologyError("region templates wire their own links; [[link]] tables cannot be added to them")
    layer_docs = regions.layers
    layers = []
    for i, layer_doc in enumerate(layer_docs):
        layer_doc = dict(layer_doc)
        name = str(layer_doc.pop("name", f"L{i}"))
        count = layer_doc.pop("neurons", 1)
        if not isinstance(count, int) or count < 1:
            raise TopologyError(f"layer {name!r}: neurons must be a positive integer")
        layers.append(Layer(name, [f"{name}.n{k}" for k in range(count)], layer_doc, count))
    topology = Topology(str(doc.get("name", "network")), int(doc.get("input_width", 0)), layers, [],
                        defaults, {**DEFAULT_SUPERVISION, **doc.get("supervision", {})},
                        dict(doc.get("output", {"decode": "label"})), int(doc.get("seed", 0)))
    topology.extensions = [dict(e) for e in doc.get("extension", [])]
    topology.neurotransmitters = doc.get("neurotransmitters")
    topology.hosts = dict(doc.get("hosts", {}))
    topology.self_reshaping = doc.get("self_reshaping")
    if not isinstance(doc.get("input", {}), dict):
        raise TopologyError("[input] must be a table (scale, frozen_after)")
    topology.input = dict(doc.get("input", {}))
    topology.maintenance = doc.get("maintenance", {} if regions.episodic_store else None)
    topology.region_flags = merge_region_flags(regions.region_flags, doc.get("region", {}),
                                               topology.supervised_regions())
    if "link" in doc:
        topology.links = [(str(l["from"]), str(l["to"])) for l in doc["link"]]
        topology.explicit_links = True
    elif regions.links is not None:
        neurons = {layer.name: layer.neurons for layer in layers}
        topology.links = [(a, b) for src, dst in regions.links for a in neurons[src] for b in neurons[dst]]
        topology.explicit_links = True
    else:
        topology.links = topology.full_links()
    return topology.validate()


def merge_region_flags(from_templates: dict[str, dict], tables, known: list[str]) -> dict[str, dict]:
    """Each region's supervisor flags: the topology's ``[region.NAME]`` tables over its template's.

    A table must name one of the ``known`` regions (a template's name or a layer's ``region`` setting).
    """
    if not isinstance(tables, dict):
        raise TopologyError("[region] must be a table of tables, [region.NAME]")
    for name, table in tables.items():
        if name not in known:
            raise TopologyError(f"[region.{name}] names no region of the topology; its regions are {known}")
        if not isinstance(table, dict):
            raise TopologyError(f"[region.{name}] must be a table")
    return {name: {**from_templates.get(name, {}), **tables.get(name, {})}
            for name in dict.fromkeys([*from_templates, *tables])}


class LiveTopology(Topology):
    """A read-only topology whose questions about one neuron are answered from indexes.

    A thousand neurons inherit one such object from the launcher. The plain queries scan every layer
    and link, and a scan in a forked child writes the reference count of every object it passes, so
    each neuron would copy the pages of the whole network (about 1 MiB at 2,000 neurons) and do
    O(network) work; an index lookup touches only what it returns. Nothing may change it once indexed.
    """

    def index(self) -> "LiveTopology":
        """Build the indexes (in the launcher, before the neurons are forked)."""
        order = {n: i for i, n in enumerate(n for layer in self.layers for n in layer.neurons)}  # network order
        self._layer_by_neuron = {n: layer for layer in self.layers for n in layer.neurons}
        sources: dict[str, set[str]] = {}
        targets: dict[str, set[str]] = {}
        for src, dst in self.links:
            sources.setdefault(dst, set()).add(src)
            targets.setdefault(src, set()).add(dst)
        self._inputs = {n: sorted((s for s in found if s in order), key=order.__getitem__) for n, found in sources.items()}
        self._outputs = {n: sorted((t for t in found if t in order), key=order.__getitem__) for n, found in targets.items()}
        self.neuron_count = len(order)
        return self

    def layer_of(self, neuron_id: str) -> Layer:
        layer = self._layer_by_neuron.get(neuron_id)
        if layer is None:
            raise TopologyError(f"unknown neuron {neuron_id!r}")
        return layer

    def inputs_of(self, neuron_id: str) -> list[str]:
        if self._layer_by_neuron.get(neuron_id) is self.layers[0]:
            return [INPUT]
        return list(self._inputs.get(neuron_id, ()))

    def outputs_of(self, neuron_id: str) -> list[str]:
        if self._layer_by_neuron.get(neuron_id) is self.layers[-1]:
            return [OUTPUT]
        return list(self._outputs.get(neuron_id, ()))


_live: dict[str, tuple[tuple[int, int, int], LiveTopology]] = {}


def load_live_topology(path: str) -> LiveTopology:
    """The live topology at ``path``, parsed once per version of the file (inode, size, mtime).

    The launcher calls it before forking each neuron, so a neuron inherits the parsed topology
    instead of parsing the whole network again -- a thousand neurons would parse it a thousand
    times; a reshape writes a new file (``save`` replaces it), which is parsed once on next use.
    Readers share the object and must not change it; writers use :meth:`Topology.load`.
    """
    stat = os.stat(path)
    version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _live.get(path)
    if cached is None or cached[0] != version:
        cached = _live[path] = (version, LiveTopology.load(path, validate=False).index())
    return cached[1]


def load_topology(path: str | None = None) -> Topology:
    """Read a TOML topology file; the 1-2-3-2-1 diamond when ``path`` is None."""
    with open(path or DIAMOND_TOML, "rb") as f:
        try:
            doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise TopologyError(f"{path}: {exc}") from None
    return parse_topology(doc)
