"""The network as layers of neurons, coloured by activity; deaths and replacements show at once."""
from __future__ import annotations

from textual.widgets import Static

from .._observer import ProcessRow


def fan_in(counts: list[int]) -> str:
    """A layer's inputs per neuron, as they are now (a link added into one neuron shows at once): ``5 in each``
    when they agree, each neuron's count for a small layer, the range for a large one."""
    if not counts:
        return "? in"
    if min(counts) == max(counts):
        return f"{counts[0]} in each"
    return f"{' '.join(map(str, counts))} in" if len(counts) <= 8 else f"{min(counts)}–{max(counts)} in"


class LayerGraph(Static):
    def __init__(self, **kwargs):
        super().__init__("", **kwargs)
        self.forwards: dict[str, int] = {}
        self.recent: dict[str, str] = {}

    def note_event(self, event: dict) -> None:
        """Deaths and replacements stay marked until the next snapshot or two."""
        if event.get("event") == "child_exited":
            self.recent[str(event.get("id"))] = "[b red]✗[/]"
        elif event.get("event") == "child_restarted":
            self.recent[str(event.get("id"))] = "[b yellow]↻[/]"

    def show(self, rows: list[ProcessRow]) -> None:
        layers: dict[str, list[ProcessRow]] = {}
        for row in rows:
            if row.neuron_layer is not None:
                layers.setdefault(row.neuron_layer, []).append(row)
        lines = []
        for layer, neurons in layers.items():
            cells = []
            for row in neurons:
                metrics = row.status.get("metrics", {})
                done = metrics.get("forwards", 0)
                delta = done - self.forwards.get(row.name, done)
                self.forwards[row.name] = done
                colour = "red" if not isinstance(row.pid, int) else "bright_green" if delta > 50 else \
                    "green" if delta > 0 else "grey50"
                mark = self.recent.pop(row.name, "")
                cells.append(f"[{colour}]■[/]{mark}{row.name.split('.')[-1]}")
            fan = fan_in([len(r.status["inputs"]) for r in neurons if "inputs" in r.status])
            lines.append(f"[b]{layer:>4}[/] {' '.join(cells)}  [dim]← {fan}[/]")
        self.update("\n".join(lines) or "[dim]no neurons[/]")
