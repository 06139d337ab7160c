"""Every feature that plugs into a network, in one list: the parts the topology checks and the root runs.

A part (``neurox.neuron.Part``) names the topology tables it owns, checks them, and gives its root
children; ``neurox.neuron.assemble`` starts them in the order their ``requires`` give. Adding a feature
is adding its part here (docs/architecture.md, How a feature plugs in).
"""
from .brain import CHEMISTRY, REGIONS, SHAPING, SLEEP
from .ext import EXTENSIONS, MESSENGERS
from .neuron import Part

SERVICE = Part("service", reserves=("service",))
"""The Supervisor service (``neurox.ops``): started by ``neurox run`` and ``neurox node`` beside the
network's children, with options of their own; its id is reserved here."""

PARTS = (MESSENGERS, EXTENSIONS, REGIONS, CHEMISTRY, SHAPING, SLEEP, SERVICE)
