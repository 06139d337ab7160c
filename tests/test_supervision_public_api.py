"""The public names of the runtime and the supervision tree are exactly the intended ones: a name
added or lost is a decision, made here, not an accident of an import."""
import pytest

import neurox.runtime
import neurox.supervisor_tree

pytestmark = pytest.mark.timeout(10)

RUNTIME = {
    "BadFrames", "CONTROL_MAX_BYTES", "ControlClient", "ControlError", "EVENT_HWM", "EXIT_SHUTDOWN",
    "EXIT_START_FAILED", "EventPublisher", "ExitReason", "FrameError", "LauncherClient", "LauncherError",
    "MAX_FRAME_BYTES", "Reply", "SPARE_NAME", "answer", "call", "handle_request", "ipc_endpoint", "make_socket", "nothing_listens",
    "new_context", "notify_ready", "pack", "reason_from_status", "reason_from_wait_status", "run_base",
    "run_event_bus", "serve_one", "start_early",
    "set_parent_death_signal", "set_process_name", "start_launcher", "unpack", "unpack_map", "vector_bytes",
    "vector_from", "CurveKeys", "KeysError", "create_keys", "Route", "write_tcp_plan",
    "Process", "Stop", "ALLOWED_DIR", "serve_curve", "TCP_FILE", "Calls", "call_async", "fan_out", "EVENT_MAX_BYTES", "Notifier", "connect_curve", "tcp_plan",
    "ConfigError", "read_toml", "typed", "Args", "OP_ARGUMENTS", "arguments", "arguments_table", "given", "op_arguments",
    "typed_ops", "HISTOGRAM_BOUNDS", "Histogram", "merge_histograms", "rss_bytes", "keep_heap", "WakePipe",
}
SUPERVISOR_TREE = {
    "ChildSpec", "ChildSpecError", "RestartPlan", "SUPERVISOR_TARGET", "SupervisorClient", "Tree", "TreeError",
    "child_env", "control_endpoint", "intensity_exceeded", "normalize_child_spec", "record_restart",
    "restart_plan", "root_args", "should_restart", "supervisor_spec", "NameClash", "check_names", "name_clashes",
}


@pytest.mark.parametrize("package,names", [(neurox.runtime, RUNTIME), (neurox.supervisor_tree, SUPERVISOR_TREE)])
def test_public_names(package, names):
    assert {n for n in dir(package) if not n.startswith("_")} == names
