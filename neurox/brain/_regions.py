"""Brain-region templates: a ``[[layer]]`` with ``template = "..."`` stands for a region's layers.

The templates are TOML files beside this module (``region_<name>.toml``, see docs/regions.md): the
region's layers (a ``suffix`` each; settings such as ``transmitter``, ``context`` and the supervision
``strategy``), its internal ``[[link]]`` tables, its ``entry`` layers (fed by whatever precedes the
region), its ``exit`` layer (feeding whatever follows) and the ``strategy`` of the region's supervisor
(the layers' supervisors are its children). Expanding is pure: layer tables in, layer tables,
layer-to-layer links and each region's supervisor flags out. Keys given beside ``template``
(``neurons``, ``units``, any layer setting) apply to every layer of the region; every layer gets
``region`` = the region's name.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass

TEMPLATES = ("prefrontal_cortex", "hippocampus", "basal_ganglia")
REGION_FLAGS = ("strategy", "intensity", "period_s")
"""What a template (or a topology's ``[region.NAME]`` table) may say of its region's supervisor."""


class RegionError(ValueError):
    """A region that cannot be expanded; the message says why."""


@dataclass(frozen=True)
class Expansion:
    layers: list[dict]
    links: list[tuple[str, str]] | None
    """Layer-to-layer links (every neuron of one to every neuron of the other); None when no template
    was used, so adjacent layers link fully as without regions."""
    episodic_store: bool
    """A region asked for the hippocampal store (the ``[maintenance]`` worker)."""
    region_flags: dict[str, dict]
    """Region name -> the supervisor flags its template gives (``strategy``)."""


def template(name: str) -> dict:
    if name not in TEMPLATES:
        raise RegionError(f"unknown region template {name!r}; known: {', '.join(TEMPLATES)}")
    with open(os.path.join(os.path.dirname(__file__), f"region_{name}.toml"), "rb") as f:
        return tomllib.load(f)


def expand(layer_docs: list[dict], learning_rate: float) -> Expansion:
    """The layer tables with every region template replaced by its layers, and their links.

    ``learning_rate`` is the network's default, which a template's ``learning_rate_factor`` scales.
    """
    blocks: list[tuple[list[dict], list[str], str, list[tuple[str, str]]]] = []
    used = store = False
    flags: dict[str, dict] = {}
    for i, doc in enumerate(layer_docs):
        doc = dict(doc)
        name = str(doc.get("name", f"L{i}"))
        if "template" not in doc:
            blocks.append(([doc], [name], name, []))
            continue
        used = True
        spec = template(str(doc.pop("template")))
        store = store or bool(spec.get("episodic_store", False))
        flags[name] = {k: spec[k] for k in REGION_FLAGS if k in spec}
        overrides = {k: v for k, v in doc.items() if k != "name"}
        full = {layer["suffix"]: f"{name}_{layer['suffix']}" if layer["suffix"] else name for layer in spec["layer"]}
        layers = []
        for layer in spec["layer"]:
            settings = {k: v for k, v in layer.items() if k not in ("suffix", "learning_rate_factor")}
            settings.update(overrides)
            if "learning_rate_factor" in layer and "learning_rate" not in overrides:
                settings["learning_rate"] = learning_rate * float(layer["learning_rate_factor"])
            layers.append({**settings, "name": full[layer["suffix"]], "region": name})
        internal = [(full[link["from"]], full[link["to"]]) for link in spec.get("link", [])]
        blocks.append((layers, [full[e] for e in spec["entry"]], full[spec["exit"]], internal))
    if not used:
        return Expansion([dict(d) for d in layer_docs], None, False, {})
    links = [link for _, _, _, internal in blocks for link in internal]
    for (_, _, exit_layer, _), (_, entries, _, _) in zip(blocks, blocks[1:]):
        links += [(exit_layer, entry) for entry in entries]
    return Expansion([layer for layers, *_ in blocks for layer in layers], links, store, flags)
