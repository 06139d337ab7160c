"""The supervision tree: supervisors and their children, state, pid, uptime, restarts, memory."""
from __future__ import annotations

from textual.widgets import Tree

from ...runtime import rss_bytes

from .._observer import ProcessRow
from .._words import learning_state


def rss_mib(pid) -> str:
    rss = rss_bytes(pid)
    return "-" if rss is None else f"{rss / 2 ** 20:.0f}MiB"


def label(row: ProcessRow) -> str:
    if not isinstance(row.pid, int):
        return f"[red]✗ {row.name}[/] [dim]{row.pid}[/]"
    if "error" in row.status:
        return f"[yellow]? {row.name}[/] pid {row.pid} [dim]not answering[/]"
    extra = ""
    if row.kind == "supervisor":
        extra = f" {row.status.get('strategy', '')} restarts {row.status.get('restarts_in_period', 0)}"
    elif "uptime_s" in row.status:
        extra = f" up {row.status['uptime_s']:.0f}s"
    memory = rss_mib(row.pid) if row.local else ""  # a remote host's pid is not one of this machine's
    return f"[green]●[/] {row.name}{_neuron_tags(row)} [dim]pid {row.pid}{extra} {memory}[/]"


def _neuron_tags(row: ProcessRow) -> str:
    """What an operator must see at a glance on a neuron's row: learning paused or frozen, a state other than awake."""
    if not row.is_neuron:
        return ""
    tags = [learning_state(row.status)] if learning_state(row.status) != "learning" else []
    if row.status.get("state", "awake") != "awake":
        tags.append(str(row.status["state"]))
    return "".join(f" [b yellow]{tag}[/]" for tag in tags)


class SupervisionTree(Tree):
    """Labels are updated in place; the tree is rebuilt only when its shape changes (the node data
    is the process path, so the selection survives a rebuild)."""

    def __init__(self, **kwargs):
        super().__init__("network", **kwargs)
        self.show_root = False
        self.labels: dict[str, str] = {}
        self.nodes: dict[str, object] = {}

    def show(self, rows: list[ProcessRow]) -> None:
        labels = {row.path: label(row) for row in rows}
        if list(labels) == list(self.labels):
            for path, text in labels.items():
                if self.labels[path] != text:
                    self.nodes[path].set_label(text)
            self.labels = labels
            return
        self.labels = labels
        selected = self.cursor_node.data if self.cursor_node is not None else None
        self.clear()
        self.nodes = {"": self.root}
        for row in rows:
            parent = self.nodes[row.path.rsplit("/", 1)[0] if "/" in row.path else ""]
            if row.kind == "supervisor":
                self.nodes[row.path] = parent.add(labels[row.path], data=row.path, expand=True)
            else:
                self.nodes[row.path] = parent.add_leaf(labels[row.path], data=row.path)
        if selected in self.nodes:  # once the new lines exist, the cursor goes back where it was
            self.call_after_refresh(self.move_cursor, self.nodes[selected])
