"""Child specs: OTP's defaults, and a clear error for every bad spec, wherever it is given."""
import pytest
from workers import spec

from neurox.runtime import ControlError
from neurox.supervisor_tree import (ChildSpec, ChildSpecError, SupervisorClient, Tree, TreeError,
                                    normalize_child_spec, root_args, supervisor_spec)

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]
START = ["workers:serve", {}]


def test_only_id_and_start_are_required_and_the_defaults_are_otps():
    worker = normalize_child_spec({"id": "w", "start": START})
    assert (worker.restart, worker.shutdown, worker.type) == ("permanent", 5000, "worker")
    assert worker.modules == ("workers",), "modules defaults to the target's module"
    supervisor = normalize_child_spec({"id": "s", "start": START, "type": "supervisor"})
    assert supervisor.shutdown == "infinity"


def test_every_field_can_be_given():
    given = {"id": "w", "start": ["workers:serve", {"x": 1}], "restart": "transient", "shutdown": "brutal_kill",
             "type": "worker", "modules": ["workers", "numpy"]}
    child = normalize_child_spec(given)
    assert child == ChildSpec("w", "workers:serve", {"x": 1}, "transient", "brutal_kill", "worker", ("workers", "numpy"))
    assert child.to_wire() == given
    assert normalize_child_spec(child) is child
    assert normalize_child_spec({**given, "start": ("workers:serve", {"x": 1}), "shutdown": 0}).shutdown == 0


@pytest.mark.parametrize("bad,message", [
    ("w", "a child spec is a map"),
    (["w", START], "a child spec is a map"),
    ({"start": START}, "'id' must be"),
    ({"id": "", "start": START}, "'id' must be"),
    ({"id": 7, "start": START}, "'id' must be"),
    ({"id": "a/b", "start": START}, "'id' must be a non-empty string without '/'"),
    ({"id": "w"}, "'start' must be"),
    ({"id": "w", "start": "workers:serve"}, "'start' must be"),
    ({"id": "w", "start": ["no_colon", {}]}, "'start' must be"),
    ({"id": "w", "start": ["workers:serve", []]}, "'start' must be"),
    ({"id": "w", "start": ["workers:serve", {}, "extra"]}, "'start' must be"),
    ({"id": "w", "start": START, "restart": "sometimes"}, "'restart' must be one of"),
    ({"id": "w", "start": START, "shutdown": -1}, "'shutdown' must be"),
    ({"id": "w", "start": START, "shutdown": 1.5}, "'shutdown' must be"),
    ({"id": "w", "start": START, "shutdown": True}, "'shutdown' must be"),
    ({"id": "w", "start": START, "shutdown": "soon"}, "'shutdown' must be"),
    ({"id": "w", "start": START, "type": "daemon"}, "'type' must be one of"),
    ({"id": "w", "start": START, "modules": "workers"}, "'modules' must be a list of strings"),
    ({"id": "w", "start": START, "colour": "red"}, "unknown keys \\['colour'\\]"),
])
def test_a_bad_spec_is_refused_with_the_accepted_forms_and_what_was_given(bad, message):
    with pytest.raises(ChildSpecError, match=message) as info:
        normalize_child_spec(bad)
    text = str(info.value)
    assert "only id and start are required" in text and text.endswith(f"got {bad!r}")


def test_supervisor_specs_are_checked_where_they_are_written():
    with pytest.raises(ChildSpecError, match="unique"):
        supervisor_spec("s", [spec("a"), spec("a")])
    with pytest.raises(ValueError, match="strategy must be one of"):
        root_args([spec("a")], strategy="all_for_one")
    with pytest.raises(ValueError, match="intensity"):
        root_args([spec("a")], intensity=-1)
    with pytest.raises(ChildSpecError, match="template"):
        root_args([], strategy="simple_one_for_one")
    with pytest.raises(ChildSpecError, match="template"):
        root_args([spec("a")], template=spec("t"))
    with pytest.raises(ChildSpecError, match="no children, only a template"):
        root_args([spec("a")], strategy="simple_one_for_one", template=spec("t"))
    sup = supervisor_spec("s", [spec("a")])
    assert (sup.type, sup.shutdown, sup.restart) == ("supervisor", "infinity", "permanent")


def test_a_supervisor_given_bad_specs_fails_to_start_and_leaves_nothing():
    tree = Tree({"children": [{"id": "w", "start": START}, {"id": "broken"}]})
    with pytest.raises(TreeError, match="root exited while starting"):
        tree.start()


def test_start_child_refuses_a_bad_spec_and_fills_defaults_for_a_good_one():
    with Tree(root_args([])) as tree:
        root = SupervisorClient(tree.control)
        for bad in ({"id": "x"}, "x", {"id": "x", "start": START, "restart": "never"}):
            with pytest.raises(ControlError) as info:
                root.client.call("start_child", spec=bad)
            assert info.value.error == "bad_child_spec" and "only id and start are required" in info.value.detail
        root.client.call("start_child", spec={"id": "w", "start": ["workers:serve", {}]})
        root.start_child(supervisor_spec("s", [spec("inner")]))
        rows = {row["id"]: row for row in root.which_children()}
        assert (rows["w"]["restart"], rows["w"]["type"], rows["w"]["modules"]) == ("permanent", "worker", ["workers"])
        assert rows["s"]["type"] == "supervisor"
        assert root.count_children() == {"specs": 2, "active": 2, "supervisors": 1, "workers": 1}
        root.close()
