"""The network as layers of neurons, coloured by activity; deaths and replacements show at once."""
from __future__ import annotations

from textual.widgets import Static

from .._observer import ProcessRow


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
            fan = len(neurons[0].status.get("inputs", [])) if neurons and neurons[0].status else 0
            lines.append(f"[b]{layer:>4}[/] {' '.join(cells)}  [dim]← {fan} in each[/]")
        self.update("\n".join(lines) or "[dim]no neurons[/]")
