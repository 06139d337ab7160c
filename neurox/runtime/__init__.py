"""Processes, sockets and the wire: the layer everything else in NeuroX stands on."""
from ._bad_frames import BadFrames as BadFrames
from ._behaviour import Process as Process, Stop as Stop
from ._client import (Calls as Calls, ControlClient as ControlClient, ControlError as ControlError,
                      call as call, call_async as call_async, fan_out as fan_out)
from ._control import (CONTROL_MAX_BYTES as CONTROL_MAX_BYTES, Reply as Reply, answer as answer,
                       handle_request as handle_request, serve_one as serve_one)
from ._args import (KINDS as OP_ARGUMENTS, Args as Args, arguments as arguments, arguments_table as arguments_table,
                    given as given, op_arguments as op_arguments, typed as typed_ops)
from ._bus import run_event_bus as run_event_bus
from ._config import ConfigError as ConfigError, read_toml as read_toml, typed as typed
from ._memory import keep_heap as keep_heap, rss_bytes as rss_bytes
from ._wake import WakePipe as WakePipe
from ._histogram import BOUNDS as HISTOGRAM_BOUNDS, Histogram as Histogram, merge as merge_histograms
from ._events import EVENT_MAX_BYTES as EVENT_MAX_BYTES, EventPublisher as EventPublisher
from ._curve import (ALLOWED_DIR as ALLOWED_DIR, CurveKeys as CurveKeys, serve_curve as serve_curve, KeysError as KeysError, connect_curve as connect_curve,
                     create_keys as create_keys)
from ._exit import (EXIT_SHUTDOWN as EXIT_SHUTDOWN, EXIT_START_FAILED as EXIT_START_FAILED,
                    ExitReason as ExitReason, reason_from_status as reason_from_status,
                    reason_from_wait_status as reason_from_wait_status)
from ._fork import (SPARE_NAME as SPARE_NAME, new_context as new_context, notify_ready as notify_ready,
                    set_parent_death_signal as set_parent_death_signal, set_process_name as set_process_name,
                    start_early as start_early)
from ._launcher_client import (LauncherClient as LauncherClient, LauncherError as LauncherError,
                               run_base as run_base, start_launcher as start_launcher)
from ._sockets import (EVENT_HWM as EVENT_HWM, ipc_endpoint as ipc_endpoint, make_socket as make_socket,
                       nothing_listens as nothing_listens)
from ._sd_notify import Notifier as Notifier
from ._tcp import TCP_FILE as TCP_FILE, Route as Route, tcp_plan as tcp_plan, write_tcp_plan as write_tcp_plan
from ._wire import (MAX_FRAME_BYTES as MAX_FRAME_BYTES, FrameError as FrameError, pack as pack,
                    unpack as unpack, unpack_map as unpack_map, vector_bytes as vector_bytes,
                    vector_from as vector_from)
