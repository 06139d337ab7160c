"""Every control op that takes arguments declares them as a Struct (``runtime.Args``): a missing or mistyped
argument, or an unknown key, is a ``bad_request`` naming the op, the key path, what is accepted and what
was given -- on real processes, which go on serving -- and docs/protocol.md shows each kind's table."""
import os
import re
from typing import Annotated

import msgspec
import pytest
import zmq

from _netutil import running_network
from neurox import ops as _ops  # noqa: F401  (registers the service's ops)
from neurox.neuron import load_topology, neuron_control
from neurox.runtime import (OP_ARGUMENTS, Args, ControlClient, ControlError, answer, arguments_table, given, pack,
                            typed_ops)
from neurox.supervisor_tree import control_endpoint

PROTOCOL = os.path.join(os.path.dirname(__file__), "..", "docs", "protocol.md")
STATES = '"awake" | "maintenance" | "meditative"'


def test_every_registered_kind_has_its_table_of_arguments_in_the_protocol_page():
    with open(PROTOCOL) as f:
        page = f.read()
    assert {"supervisor", "neuron", "reshaper", "modulator", "messenger_in", "service", "event bus",
            "gateway"} <= set(OP_ARGUMENTS)
    for kind, table in OP_ARGUMENTS.items():
        expected = f"### {kind}\n\n{arguments_table(table)}\n"
        assert expected in page, f"docs/protocol.md lacks (or has another) table for {kind}; it is:\n{expected}"
        for op in table:
            assert re.search(rf"`{op}`", page)


@pytest.mark.timeout(90)
def test_bad_arguments_are_refused_precisely_and_every_process_goes_on_serving(tmp_path, no_stray_processes):
    with running_network(load_topology(), tmp_path) as network:
        ctx, run = zmq.Context.instance(), network.run_dir
        where = {"neuron": neuron_control(run, network.topology, "L1.n0"), "root": network.control,
                 "reshaper": control_endpoint(run, "root/reshaper"), "messenger_in": control_endpoint(run, "root/messenger_in"),
                 "bus": network.tree.events_control}
        clients = {name: ControlClient(ctx, endpoint, 10) for name, endpoint in where.items()}
        try:
            pids = {name: client.call("status").get("pid") for name, client in clients.items()}
            cases = [
                ("neuron", {"op": "add_link", "direction": "in", "peer": "L0.n0", "width": True},
                 "add_link: width has the wrong type: accepted int, got True (bool)"),
                ("neuron", {"op": "add_link", "direction": "sideways", "peer": "x"},
                 "add_link: direction: accepted \"in\" | \"out\", got 'sideways'"),
                ("neuron", {"op": "set_params", "lerning_rate": 0.1},
                 "set_params: unknown key 'lerning_rate'; accepted: weights, bias, add, activation, learning_rate, "
                 "flush_interval_s, join_timeout_ms, learning, frozen"),
                ("neuron", {"op": "set_params", "weights": {"shape": [2, "x"], "data": b""}},
                 "set_params: weights.shape[1] has the wrong type: accepted int, got 'x' (str)"),
                ("neuron", {"op": "inject"}, "inject: vector is required (accepted [number])"),
                ("neuron", {"op": "set_state", "state": "asleep"}, f"set_state: state: accepted {STATES}, got 'asleep'"),
                ("root", {"op": "terminate_child", "id": 5}, "terminate_child: id has the wrong type: accepted str, got 5 (int)"),
                ("root", {"op": "delete_child"}, "delete_child: id is required (accepted str)"),
                ("root", {"op": "restart_child", "id": "L1", "force": True},
                 "restart_child: unknown key 'force'; accepted: id"),
                ("reshaper", {"op": "add_layer", "name": "Lx", "after": "L1", "neurons": 0},
                 "add_layer: neurons: accepted int >= 1, got 0"),
                ("reshaper", {"op": "set_settings", "layer": "L1", "settings": {"units": 3}},
                 "set_settings: settings: unknown key 'units'; accepted: activation, learning_rate, flush_interval_s, "
                 "join_timeout_ms"),
                ("reshaper", {"op": "remove_link", "from": "L0.n0"}, "remove_link: to is required (accepted str)"),
                ("messenger_in", {"op": "education", "path": 3}, "education: path has the wrong type: accepted str, got 3 (int)"),
                ("bus", {"op": "recent_events", "limit": "all"}, "recent_events: limit has the wrong type: accepted int, got 'all' (str)"),
            ]
            for name, request, detail in cases:
                with pytest.raises(ControlError) as caught:
                    clients[name].call(**request)
                assert (caught.value.error, caught.value.detail) == ("bad_request", detail), (name, request)
            for name, client in clients.items():  # the same processes answer, and they still do their work
                assert client.call("status").get("pid") == pids[name], name
            assert clients["neuron"].call("set_state", state="meditative")["state"] == "meditative"
            assert clients["neuron"].call("set_params", learning_rate=0.25)["learning_rate"] == 0.25
            assert len(clients["bus"].call("recent_events", limit=3)) == 3
            assert {row["id"] for row in clients["root"].call("which_children")} >= {"L1", "reshaper", "messenger_in"}
            assert not os.path.exists(os.path.join(str(tmp_path), "reshape.log")), "a refused change was recorded"
        finally:
            for client in clients.values():
                client.close()


class Grow(Args):
    by: Annotated[int, msgspec.Meta(ge=1)] = 1
    note: str | msgspec.UnsetType = msgspec.UNSET


def test_a_typed_handler_gets_its_struct_and_a_bad_request_names_the_op_and_the_key():
    handlers = {"ping": lambda r: "pong", **typed_ops({"grow": Grow}, {"grow": lambda args: [args.by, given(args)]})}
    assert answer(pack({"op": "grow", "rid": 3}), handlers) == {"ok": True, "result": [1, {"by": 1}], "rid": 3}
    assert answer(pack({"op": "grow", "by": 2, "note": "x"}), handlers)["result"] == [2, {"by": 2, "note": "x"}]
    for request, detail in (({"by": "2"}, "grow: by has the wrong type: accepted int, got '2' (str)"),
                            ({"by": 0}, "grow: by: accepted int >= 1, got 0"),
                            ({"by": 2, "bye": 1}, "grow: unknown key 'bye'; accepted: by, note")):
        assert answer(pack({"op": "grow", **request}), handlers) == {"ok": False, "error": "bad_request", "detail": detail}
    assert answer(pack({"op": "ping", "anything": 1}), handlers)["result"] == "pong"  # no arguments: no check
    with pytest.raises(TypeError, match="no handler"):
        typed_ops({"grow": Grow, "shrink": Grow}, {"grow": print})
    assert arguments_table({"grow": Grow}).splitlines()[2:] == ["| `grow` | `by` | int >= 1 | `1` |",
                                                                "| `grow` | `note` | str | optional |"]
