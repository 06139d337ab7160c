"""``neurox probe ...``: small ZeroMQ tools for the shell, in the spirit of systemctl and circusctl.

Every probe finds the network through ``--data-dir`` (its ``run.json``) or talks to ``--endpoint``,
waits at most ``--timeout`` seconds for an answer, and exits with 0 (answered), 1 (the target
answered with an error) or 3 (no answer in time, or nothing running there) with a one-line reason.

``status``, ``tree``, ``metrics`` (of a neuron) and ``events --recent`` ask the network's Supervisor
service when it runs (one request, however large the network, and restarts, deaths and replacements
counted); without it, or with ``--direct``, they ask every process themselves, as ``ping``, ``tap``
and ``inject`` always do. With ``--remote`` (a host's control gateway and a client's keys), ``ping``,
``status``, ``tree``, ``metrics`` and ``state`` ask that host's processes by their paths.

Heavy modules (numpy, the neuron package, the service's client) are imported by the probes that need
them, so ``neurox probe ping`` answers in a fraction of the time their imports take.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time

import zmq

from ..runtime import (ControlClient, ControlError, KeysError, ipc_endpoint, make_socket, nothing_listens, rss_bytes,
                       unpack, unpack_map)
from ..supervisor_tree import control_endpoint
from ._discovery import add_remote_arguments, add_target_arguments, find_network, remote_of

NO_ANSWER = 3


class ProbeError(Exception):
    """A probe cannot go on; ``code`` is its exit status."""

    def __init__(self, message: str, code: int = NO_ANSWER):
        super().__init__(message)
        self.code = code


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("probe", help="ping, inspect, follow and poke a running network")
    probes = parser.add_subparsers(dest="probe", required=True)

    def probe(name: str, text: str, handler, via_service: bool = False, remote: bool = False):
        p = probes.add_parser(name, help=text)
        add_target_arguments(p)
        if remote:
            add_remote_arguments(p)
        p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer (default: %(default)s)")
        if via_service:
            p.add_argument("--direct", action="store_true",
                           help="ask the processes themselves, not the Supervisor service")
        p.set_defaults(handler=lambda args: _run(handler, args), direct=not via_service)
        return p

    p = probe("ping", "ping a neuron (by id), a supervisor (by path, e.g. root/L2) or --endpoint", ping, remote=True)
    p.add_argument("target", nargs="?", default="root")
    p = probe("status", "every supervisor and neuron: state, pid, uptime, restarts, memory", status, True, True)
    p.add_argument("--json", action="store_true")
    probe("tree", "the supervision tree", tree, True, True)
    p = probe("events", "follow lifecycle events", events, True)
    p.add_argument("--filter", default="", help="only events whose name starts with this "
                                                "(neuron_report: the neurons' periodic reports, left out otherwise)")
    p.add_argument("--count", type=int, help="stop after this many events")
    p.add_argument("--recent", type=int, default=0, help="first print this many past events")
    p = probe("tap", "mirror the frames a neuron sends, without disturbing it", tap)
    p.add_argument("neuron")
    p.add_argument("--count", type=int, default=10)
    p = probe("inject", "send a vector into any neuron (inference only)", inject)
    p.add_argument("neuron")
    p.add_argument("--vector", help="comma-separated numbers (default: random, of the neuron's fan-in)")
    p = probe("metrics", "a neuron's (or any process's) metrics as JSON; target 'latency': the network's "
                         "request latency and neurons' processing time (histograms)", metrics, True, True)
    p.add_argument("target")
    p = probe("state", "show or set the state (awake, meditative, maintenance) of a neuron, or of a region "
                       "through its modulator (target root/modulator.REGION); target 'scaling': the statistics "
                       "with which the network scales its inputs (and regression targets)", state, remote=True)
    p.add_argument("target")
    p.add_argument("state", nargs="?", help="the new state (default: show the current one)")
    probe("service", "the Supervisor service: the hosts it hears, what it holds", service)


def _run(handler, args: argparse.Namespace) -> int:
    try:
        try:
            args.remote_host = remote_of(args)
        except (ValueError, KeysError) as exc:
            raise ProbeError(str(exc), code=2) from None
        return handler(args, zmq.Context.instance()) or 0
    except ProbeError as exc:
        print(f"neurox probe {args.probe}: {exc}")
        return exc.code


def _network(args: argparse.Namespace) -> dict:
    found = find_network(args.data_dir)
    if not found:
        raise ProbeError(f"no running network found in {args.data_dir} (give --data-dir or --endpoint)")
    return found


def _call(ctx: zmq.Context, endpoint, op: str, timeout: float, **request):
    """One request to an ipc/tcp endpoint, or to a ``RemotePath`` through its host's gateway."""
    if isinstance(endpoint, str) and nothing_listens(endpoint):
        raise ProbeError(f"nothing listens at {endpoint}: no such process, or it is down (`neurox probe tree` "
                         "lists the network's)")
    client = endpoint.remote.client(ctx, endpoint.path, timeout) if hasattr(endpoint, "remote") else \
        ControlClient(ctx, endpoint, timeout)
    try:
        with _as_probe_errors(f"{endpoint} did not answer within {timeout} s"):
            return client.call(op, **request)
    finally:
        client.close()


@contextlib.contextmanager
def _as_probe_errors(on_timeout: str):
    """A control call's error as the one line a probe prints (``on_timeout`` for a silence)."""
    try:
        yield
    except ControlError as exc:
        if exc.error == "timeout":
            raise ProbeError(on_timeout) from None
        raise ProbeError(f"{exc.error}: {exc.detail}", code=1) from None


def _resolve(args: argparse.Namespace, target: str) -> str:
    """An endpoint for a neuron id, a tree path, or the given --endpoint; over --remote, a path's."""
    if args.endpoint:
        return args.endpoint
    if getattr(args, "remote_host", None) is not None:
        if "/" not in target and target != "root":
            raise ProbeError(f"with --remote, name a process by its path (root/LAYER/{target}), not its id", code=2)
        return args.remote_host.at(target)
    run_dir = _network(args)["run_dir"]
    if "/" in target or target == "root":
        return control_endpoint(run_dir, target)
    from ..neuron import neuron_control
    return neuron_control(run_dir, _topology(args), target)


def _topology(args: argparse.Namespace):
    from ..neuron import Topology, topology_path
    network = _network(args)
    data_dir = network.get("data_dir") or args.data_dir
    try:
        return Topology.load(topology_path(data_dir))
    except (OSError, ValueError) as exc:
        raise ProbeError(f"cannot read the topology in {data_dir}: {exc}") from None


def ping(args, ctx) -> int:
    endpoint = _resolve(args, args.target)
    started = time.perf_counter()
    _call(ctx, endpoint, "ping", args.timeout)
    print(f"pong from {args.target} in {(time.perf_counter() - started) * 1000:.2f} ms")
    return 0


def _service(args: argparse.Namespace, ctx: zmq.Context):
    """The Supervisor service (a ``ServiceClient``), unless --direct, --endpoint or --remote is given or it
    does not run."""
    if args.direct or args.endpoint or getattr(args, "remote_host", None) is not None:
        return None
    from ..ops import ServiceClient
    return ServiceClient.find(ctx, _network(args)["run_dir"], args.timeout)


def _service_call(service, op: str, **request):
    try:
        with _as_probe_errors(f"the Supervisor service did not answer within {service.client.timeout} s"):
            return service.call(op, **request)
    finally:
        service.close()


def process_rows(args: argparse.Namespace, ctx: zmq.Context) -> list[dict]:
    """Every process: path, depth, type, pid, a brief status (and its host, from the service)."""
    service = _service(args, ctx)
    if service is not None:
        return [{k: row[k] for k in ("host", "path", "depth", "type", "pid")} | {"status": _service_brief(row)}
                for row in _service_call(service, "tree")["rows"]]
    return [{k: v for k, v in row.items() if k != "status"} | {"status": _brief(row)}
            for row in walk(ctx, _root(args), args.timeout)]


def walk(ctx: zmq.Context, root, timeout: float) -> list[dict]:
    """Every process under ``root`` (an endpoint, or a ``RemotePath``: then each child by its path through
    the same gateway), depth first: path, depth, type, pid, and what it says of itself."""
    rows = [{"path": "root", "depth": 0, "type": "supervisor", "status": _call(ctx, root, "status", timeout)}]
    rows[0]["pid"] = rows[0]["status"]["pid"]

    def visit(status: dict, path: str, depth: int) -> None:
        for child in status.get("children", []):
            row = {"path": f"{path}/{child['id']}", "depth": depth, "type": child["type"], "pid": child["pid"]}
            rows.append(row)
            if isinstance(child["pid"], int):
                endpoint = root.remote.at(row["path"]) if hasattr(root, "remote") else child["control"]
                try:
                    row["status"] = _call(ctx, endpoint, "status", timeout)
                except ProbeError as exc:
                    row["status"] = {"error": str(exc)}
                if child["type"] == "supervisor" and "children" in row["status"]:
                    visit(row["status"], row["path"], depth + 1)

    visit(rows[0]["status"], "root", 1)
    return rows


def _root(args: argparse.Namespace):
    if getattr(args, "remote_host", None) is not None:
        return args.remote_host.at("root")
    return args.endpoint or _network(args)["control"]


def status(args, ctx) -> int:
    rows = process_rows(args, ctx)
    if args.json:
        print(json.dumps(rows))
        return 0
    hosts = len({row.get("host") for row in rows}) > 1
    print(f"{'HOST  ' if hosts else ''}{'PATH':34} {'STATE':10} {'PID':>7} {'UPTIME':>9} {'RESTARTS':>8} {'RSS MiB':>8}")
    for row in rows:
        brief = row["status"]
        print(f"{row['host'] + '  ' if hosts else ''}{row['path']:34} {brief['state']:10} {str(row['pid']):>7} "
              f"{brief['uptime']:>9} {brief['restarts']:>8} {brief['rss']:>8}")
    return 0


def _brief(row: dict) -> dict:
    st = row.get("status") or {}
    pid = row["pid"]
    state = "running" if isinstance(pid, int) and "error" not in st else (pid if isinstance(pid, str) else "silent")
    uptime = f"{st['uptime_s']:.0f}s" if "uptime_s" in st else "-"
    restarts = str(st.get("restarts_in_period", "-"))
    return {"state": state, "uptime": uptime, "restarts": restarts, "rss": _rss_mib(pid)}


def _rss_mib(pid, reported: int | None = None) -> str:
    if isinstance(reported, int):
        return f"{reported / 2 ** 20:.1f}"
    rss = rss_bytes(pid) if isinstance(pid, int) else None
    return "-" if rss is None else f"{rss / 2 ** 20:.1f}"


def _service_brief(row: dict) -> dict:
    """The same brief from a service row: restarts are the supervisor's in its period, else the child's."""
    restarts = row["restarts_in_period"] if row["type"] == "supervisor" else row["restarts"]
    uptime = f"{row['uptime_s']:.0f}s" if isinstance(row.get("uptime_s"), (int, float)) else "-"
    return {"state": row["state"], "uptime": uptime, "restarts": str("-" if restarts is None else restarts),
            "rss": _rss_mib(row["pid"], row.get("rss_bytes"))}


def tree(args, ctx) -> int:
    rows = process_rows(args, ctx)
    hosts = len({row.get("host") for row in rows}) > 1
    for row in rows:
        name = row["path"].rsplit("/", 1)[-1]
        if hosts and row["depth"] == 0:
            name = f"{row['host']}: {name}"
        print(f"{'  ' * row['depth']}{name} [{row['type']}] pid {row['pid']}")
    return 0


def events(args, ctx) -> int:
    network = {} if args.endpoint else _network(args)
    endpoint = args.endpoint or network["events"]
    reports = args.filter.startswith("neuron_report")  # the periodic reports only when asked for by name
    service = _service(args, ctx) if args.recent else None
    if service is not None:  # its history holds lifecycle events only, and more of them than the bus's
        for event in _service_call(service, "recent_events", limit=args.recent, prefix=args.filter):
            print(json.dumps(event, default=repr))
    elif args.recent and network.get("events_control"):
        past = _call(ctx, network["events_control"], "recent_events", args.timeout, limit=100_000, prefix=args.filter)
        for event in [e for e in past if reports or e.get("event") != "neuron_report"][-args.recent:]:
            print(json.dumps(event, default=repr))
    sub = make_socket(ctx, zmq.SUB, connect=endpoint, linger_ms=0)
    sub.setsockopt(zmq.SUBSCRIBE, args.filter.encode())
    seen = 0
    try:
        while args.count is None or seen < args.count:
            if not sub.poll(int(args.timeout * 1000) if args.count else 1000):
                if args.count:
                    raise ProbeError(f"no event within {args.timeout} s")
                continue
            event = unpack_map(sub.recv_multipart()[1])
            if event.get("event") == "neuron_report" and not reports:
                continue
            print(json.dumps(event, default=repr), flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    return 0


def tap(args, ctx) -> int:
    endpoint = _resolve(args, args.neuron)
    tapped = _call(ctx, endpoint, "tap", args.timeout, on=True)["endpoint"]
    sub = make_socket(ctx, zmq.SUB, connect=tapped, linger_ms=0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        for _ in range(args.count):
            if not sub.poll(int(args.timeout * 1000)):
                raise ProbeError(f"{args.neuron} sent nothing within {args.timeout} s")
            topic, frame = sub.recv_multipart()
            message = unpack(frame)
            print(json.dumps({"to": topic.decode(), "kind": ["forward", "gradient", "output"][message[0]],
                              "packets": message[2], "rows": message[3], "bytes": len(frame)}), flush=True)
    finally:
        sub.close()
        _call(ctx, endpoint, "tap", args.timeout, on=False)
    return 0


def inject(args, ctx) -> int:
    import numpy as np
    endpoint = _resolve(args, args.neuron)
    fan_in = sum(_call(ctx, endpoint, "get_params", args.timeout)["widths"].values())
    if args.vector:
        try:
            vector = [float(v) for v in args.vector.split(",")]
        except ValueError:
            raise ProbeError("--vector takes comma-separated numbers", code=2) from None
    else:
        vector = np.random.default_rng().random(fan_in).tolist()
    ret = None
    if not args.endpoint:
        ret = make_socket(ctx, zmq.PULL, bind=ipc_endpoint(_network(args)["run_dir"], f"probe.{time.time_ns()}.ret"))
    try:
        origin = ret.getsockopt_string(zmq.LAST_ENDPOINT) if ret is not None else None
        result = _call(ctx, endpoint, "inject", args.timeout, vector=vector, origin=origin)
        print(json.dumps({"neuron": args.neuron, "output": result["output"]}))
        if ret is not None and ret.poll(int(args.timeout * 1000)):
            answer = unpack(ret.recv())[0]
            final = np.frombuffer(answer["output"], dtype="<f4").tolist()
            print(json.dumps({"end_of_network": final, **{k: answer[k] for k in ("label", "text") if k in answer}}))
    finally:
        if ret is not None:
            ret.close()
    return 0


def metrics(args, ctx) -> int:
    """A neuron's metrics as it last reported them, with what the service counted about it under
    ``supervision``; a path or ``--direct``: asked of the process itself; ``latency``: the network's
    request latency and neurons' processing time, from the service."""
    service = None if "/" in args.target or args.target == "root" else _service(args, ctx)
    if args.target == "latency" and service is not None:
        print(json.dumps(_service_call(service, "latency")))
        return 0
    if service is None:
        print(json.dumps(_call(ctx, _resolve(args, args.target), "metrics", args.timeout)))
        return 0
    found = _service_call(service, "neuron_metrics", id=args.target)
    supervision = {k: found[k] for k in ("host", "layer", "path", "pid", "state", "report_age_s", "restarts",
                                         "deaths_by_reason", "replacements_by_method", "rates")}
    print(json.dumps({**(found.get("metrics") or {}), "supervision": supervision}))
    return 0


def service(args, ctx) -> int:
    from ..ops import ServiceClient
    found = None if args.endpoint else ServiceClient.find(ctx, _network(args)["run_dir"], args.timeout)
    if found is None and args.endpoint:
        found = ServiceClient(ctx, args.endpoint, args.timeout)
    if found is None:
        raise ProbeError("the Supervisor service is not running in this network")
    print(json.dumps(_service_call(found, "status")))
    return 0


def state(args, ctx) -> int:
    if args.target in ("scaling", "root/messenger_in"):  # the network's input scaling, kept by MessengerIn
        if args.state:
            raise ProbeError("the scaling is set in the topology ([input] scale) or with neurox run --scale")
        scaling = _call(ctx, _resolve(args, "root/messenger_in"), "scaling", args.timeout)
        print(json.dumps({"target": "scaling", **scaling}))
        return 0
    endpoint = _resolve(args, args.target)
    if args.target.startswith("root/modulator.") and isinstance(endpoint, str) and nothing_listens(endpoint):
        raise ProbeError(f"no {args.target} runs: a region's modulator runs when the topology has a "
                         "[neurotransmitters] table (docs/brain.md; `neurox probe tree` lists the processes)")
    if args.state:
        _call(ctx, endpoint, "set_state", args.timeout, state=args.state)
    current = _call(ctx, endpoint, "status", args.timeout)
    print(json.dumps({"target": args.target, **{k: current[k] for k in ("state", "state_source", "region",
                                                                          "effective_flush_interval_s") if k in current}}))
    return 0
