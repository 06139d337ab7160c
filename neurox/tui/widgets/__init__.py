"""The TUI's widgets, one module each."""
from .detail import NeuronDetail as NeuronDetail
from .event_filter import EventFilter as EventFilter
from .event_log import EventLog as EventLog
from .graph import LayerGraph as LayerGraph
from .supervision import SupervisionTree as SupervisionTree
from .vitals import Vitals as Vitals
