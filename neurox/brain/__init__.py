"""The brain on top of the neurons: chemistry (neurotransmitters and their modulators), regions, sleep with
the hippocampus, the maintenance worker and its pool of twins, shaping and the self-reshaper
(docs/brain.md, docs/regions.md). A neuron senses the chemistry through its own parts (``neuron``); it
knows none of these features by name."""
from ._neurotransmitters import ChemistryError as ChemistryError, region_chemistry as region_chemistry
from ._regions import REGIONS as REGIONS, RegionError as RegionError
from ._modulator import CHEMISTRY as CHEMISTRY, modulator_children as modulator_children, modulator_id as modulator_id
from ._sleep import (Phase as Phase, SleepConfig as SleepConfig, advance as advance_sleep,
                     balanced_victim as balanced_victim, start as start_sleep)
from ._shaping import ShapingConfig as ShapingConfig
from ._self_reshaper import SHAPING as SHAPING, self_reshaper_children as self_reshaper_children
from ._maintenance import SLEEP as SLEEP, maintenance_children as maintenance_children, recall_endpoint as recall_endpoint
from ._pool import POOL_ID as POOL_ID, batch_call as batch_call
