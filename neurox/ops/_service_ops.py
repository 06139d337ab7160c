"""What the supervisor service's ops take (docs/protocol.md, "Supervisor service"). ``host`` is optional
everywhere: without it every host is answered for; one the service does not know is ``not_found``."""
from __future__ import annotations

from typing import Annotated

import msgspec

from ..runtime import Args, op_arguments


class OnHost(Args):
    host: str | None = None


class NeuronStatus(OnHost):
    layer: str | None = None


class NeuronMetrics(OnHost, kw_only=True):
    id: Annotated[str, msgspec.Meta(min_length=1)]
    """The neuron's id, such as ``L2.n1``."""


class TreeArgs(OnHost):
    detail: bool = False


class RecentEvents(OnHost):
    limit: Annotated[int, msgspec.Meta(ge=0)] = 100
    prefix: str = ""


SERVICE_ARGS = op_arguments("service", {"neuron_status": NeuronStatus, "neuron_metrics": NeuronMetrics,
                                        "tree": TreeArgs, "recent_events": RecentEvents, "latency": OnHost})
