"""docs/protocol.md's examples are a client: each Python block that names a RUN_DIR runs, as written,
against a real network (its asserts are the document's claims), so the document cannot drift from
what the processes answer."""
import re
from pathlib import Path

import pytest
import zmq

from _netutil import running_network
from neurox.neuron import load_topology

DOC = Path(__file__).parent.parent / "docs" / "protocol.md"
PLACEHOLDER = 'RUN_DIR = "/tmp/nx-abc"'


def examples() -> list[tuple[str, str]]:
    """(the section it is in, the code) of every runnable Python block."""
    found, section = [], ""
    for part in re.split(r"(^## .*$)", DOC.read_text(), flags=re.M):
        if part.startswith("## "):
            section = part[3:]
            continue
        found += [(section, code) for code in re.findall(r"```python\n(.*?)```", part, re.S) if PLACEHOLDER in code]
    return found


def test_the_document_has_its_runnable_examples():
    sections = [section for section, _ in examples()]
    assert "MessengerIn" in sections and "Probing a neuron: inject and tap" in sections, sections


@pytest.mark.timeout(90)
def test_every_example_runs_against_a_live_network(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        for section, code in examples():
            namespace: dict = {}
            try:
                exec(compile(code.replace(PLACEHOLDER, f'RUN_DIR = "{network.run_dir}"'), f"protocol.md: {section}",
                             "exec"), namespace)
            finally:
                contexts = {v if isinstance(v, zmq.Context) else v.context for v in namespace.values()
                            if isinstance(v, (zmq.Context, zmq.Socket))}
                for ctx in contexts:
                    ctx.destroy(linger=0)
