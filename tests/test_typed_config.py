"""Typed configuration: every section's schema refuses a wrong type with one line naming the file, the key
path, what is accepted and what it got; one TOML reader in the package."""
import pathlib
import subprocess
import sys

import pytest

from neurox.neuron import TopologyError, load_topology
from neurox.runtime import ConfigError, read_toml

pytestmark = pytest.mark.timeout(60)

ROOT = pathlib.Path(__file__).resolve().parent.parent
BASE = 'name = "t"\ninput_width = 2\n'
LAYERS = '[[layer]]\nunits = 3\n[[layer]]\n[[layer]]\nunits = "abc"\n[[layer]]\n'


def write(tmp_path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


def test_neurox_run_refuses_a_wrong_type_in_one_line_naming_file_key_accepted_and_got(tmp_path):
    path = write(tmp_path, BASE + LAYERS)
    run = subprocess.run([sys.executable, "-m", "neurox.cli", "run", "--topology", path, "--data-dir",
                          str(tmp_path / "data")], capture_output=True, text=True, timeout=50, cwd=ROOT)
    assert run.returncode == 2, run
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert lines == [f"neurox run: {path}: layer[2].units has the wrong type: accepted int, got 'abc' (str)"]
    assert not (tmp_path / "data").exists()  # refused before anything was made


@pytest.mark.parametrize("text, message", [
    # the topology's own tables
    (BASE + 'seed = "7"\n[[layer]]\n', "seed has the wrong type: accepted int, got '7' (str)"),
    (BASE + '[defaults]\nlearning_rate = "fast"\n[[layer]]\n',
     "defaults.learning_rate has the wrong type: accepted float, got 'fast' (str)"),
    (BASE + '[defaults]\ncolour = 1\n[[layer]]\n', "defaults: unknown key 'colour'; accepted: units, activation, "),
    (BASE + '[[layer]]\nneurons = true\n', "layer[0].neurons has the wrong type: accepted int, got True (bool)"),
    (BASE + '[[layer]]\nname = "a"\n[[layer]]\nname = "b"\n[[link]]\nfrom = "a.n0"\n', "link[0]: to is required"),
    (BASE + '[[layer]]\n[[link]]\nfrom = "a.n0"\nto = 3\n',
     "link[0].to has the wrong type: accepted str, got 3 (int)"),
    (BASE + '[hosts]\nh1 = 10\n[[layer]]\n', "hosts.h1 has the wrong type: accepted str, got 10 (int)"),
    (BASE + '[supervision]\nperiod_s = "5s"\n[[layer]]\n',
     "supervision.period_s has the wrong type: accepted float, got '5s' (str)"),
    (BASE + '[[layer]]\nname = "bg"\ntemplate = "basal_ganglia"\n[region.bg]\nintensity = 2.5\n',
     "region.bg.intensity has the wrong type: accepted int, got 2.5 (float)"),
    # the parts' tables
    (BASE + '[self_reshaping]\nstructural = "no"\n[[layer]]\n',
     "self_reshaping.structural has the wrong type: accepted bool, got 'no' (str)"),
    (BASE + '[self_reshaping]\nmax_neurons = 0\n[[layer]]\n', "self_reshaping.max_neurons: accepted int >= 1, got 0"),
    (BASE + '[maintenance]\ncapacity = "many"\n[[layer]]\n',
     "maintenance.capacity has the wrong type: accepted int, got 'many' (str)"),
    (BASE + '[neurotransmitters.region.cortex.dopamine]\nrest = "high"\n[[layer]]\n',
     "neurotransmitters.region.cortex.dopamine.rest has the wrong type: accepted float, got 'high' (str)"),
    (BASE + '[neurotransmitters]\ngaba = 1\n[[layer]]\n',
     "neurotransmitters.gaba has the wrong type: accepted a table, got 1 (int)"),
])
def test_a_wrong_type_in_each_section_names_file_key_path_accepted_and_got(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: {message}"), text
    assert "\n" not in text


def test_right_types_still_load_and_integers_are_accepted_where_numbers_are(tmp_path):
    path = write(tmp_path, BASE + '[defaults]\nlearning_rate = 1\n[self_reshaping]\ninterval_s = 2\nstructural = false\n'
                             '[maintenance]\nawake_s = 60\n[neurotransmitters.dopamine]\nrest = 2\n[[layer]]\n')
    topology = load_topology(path)
    assert topology.defaults["learning_rate"] == 1 and topology.self_reshaping == {"interval_s": 2, "structural": False}
    assert topology.maintenance == {"awake_s": 60} and topology.neurotransmitters == {"dopamine": {"rest": 2}}


def test_an_unreadable_or_broken_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path}/missing.toml: "):
        read_toml(str(tmp_path / "missing.toml"))
    path = write(tmp_path, 'name = "x\n')
    with pytest.raises(TopologyError, match=f"^{path}: "):
        load_topology(path)


def test_one_toml_reader_in_the_package():
    readers = [p.relative_to(ROOT).as_posix() for p in (ROOT / "neurox").rglob("*.py") if "tomllib" in p.read_text()]
    assert readers == ["neurox/runtime/_config.py"]
