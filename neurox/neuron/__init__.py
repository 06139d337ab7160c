"""Neurons that learn: the neuron process, its state, the topology, and the network they form."""
from ._endpoints import (inbox_endpoint as inbox_endpoint, messenger_in_endpoint as messenger_in_endpoint,
                         neuron_control as neuron_control, topology_path as topology_path)
from ._frames import (FORWARD as FORWARD, GRADIENT as GRADIENT, OUTPUT as OUTPUT_FRAME, array_from_wire as array_from_wire,
                      array_to_wire as array_to_wire, decode as decode_frame, encode_forward as encode_forward,
                      rows_block as rows_block, split_rows as split_rows)
from ._answers import (Answer as Answer, answers_of as answers_of, decode_outputs as decode_outputs,
                       forget_recalled as forget_recalled, to_user_units as to_user_units)
from ._activations import ACTIVATIONS as ACTIVATIONS
from ._data_dir import (LOCK as DATA_DIR_LOCK, MARKER as DATA_DIR_MARKER, OWNED as DATA_DIR_ENTRIES,
                        DataDirError as DataDirError,
                        ensure_usable as ensure_usable_data_dir, wipe as wipe_data_dir)
from ._network import Network as Network, live_topology as live_topology
from ._tree_specs import layer_spec as layer_spec, neuron_spec as neuron_spec
from ._hosts import PlacementError as PlacementError
from ._placement import (control_tcp as control_tcp, events_tcp as events_tcp,
                         front_host as front_host, front_only as front_only, layers_on as layers_on, maintenance_host as maintenance_host)
from ._state import NeuronStore as NeuronStore
from ._shapes import SHAPES as SHAPES, load_shape as load_shape, topology_file as topology_file
from ._topology import (INPUT as INPUT, OUTPUT as OUTPUT, REGION_FLAGS as REGION_FLAGS, Topology as Topology,
                        TopologyError as TopologyError, load_topology as load_topology, parse_topology as parse_topology,
                        root_ids as root_ids)
from ._parts import Part as Part, assemble as assemble, child_id as child_id, start_order as start_order
from ._reshaping import Reshaping as Reshaping
from ._modulation import (DEFAULT_TRANSMITTER as DEFAULT_TRANSMITTER, LEVELS_TOPIC as LEVELS_TOPIC,
                          NEUTRAL as NEUTRAL, PUBLISH_INTERVAL_S as PUBLISH_INTERVAL_S,
                          TRANSMITTERS as TRANSMITTERS, Modulation as Modulation, levels_endpoint as levels_endpoint,
                          modulation as modulation, reports_endpoint as reports_endpoint)
from ._plasticity import PLASTICITY as PLASTICITY, oja_update as oja_update
from ._endpoints import experiences_endpoint as experiences_endpoint
from ._feed import FirstLayerFeed as FirstLayerFeed
from ._spread import (GATEWAY_OFFSET as GATEWAY_OFFSET, GATEWAY_PATH as GATEWAY_PATH, GatewayClient as GatewayClient,
                      adopt_topology as adopt_topology)
from ._states import (DEFAULT_STATE as DEFAULT_STATE, STATES as STATES, check_state as check_state,
                      flush_interval as flush_interval)
from ._staleness import (DEFAULT_GROUP as DEFAULT_STALENESS_GROUP, DEFAULT_RULE as DEFAULT_STALENESS,
                         DEFAULT_KNEE as DEFAULT_KNEE, DEFAULT_RAMP as DEFAULT_RAMP, DEFAULT_WINDOW as DEFAULT_WINDOW, RULES as STALENESS_RULES, make_rule as make_staleness_rule)
from ._init import INITS as INITS, default_init as default_init, init_of as init_of
from ._math import initial_weights as initial_weights, link_rms as link_rms, output_gradient as output_gradient
