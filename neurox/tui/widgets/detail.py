"""A neuron's detail: settings, weight statistics and histogram, messages/s, misses, flushes, state and
neuromodulators."""
from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from .._observer import ProcessRow


class NeuronDetail(Vertical):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.last: tuple[str, int, float] | None = None

    def compose(self) -> ComposeResult:
        yield Static("[dim]select a neuron[/]", id="detail-text")
        yield Sparkline([], id="detail-histogram")

    def show(self, row: ProcessRow | None) -> None:
        text = self.query_one("#detail-text", Static)
        if row is None or not row.is_neuron:
            text.update("[dim]select a neuron in the tree[/]")
            return
        st, metrics = row.status, row.status.get("metrics", {})
        now = time.monotonic()
        rate = 0.0
        if self.last and self.last[0] == row.name and now > self.last[2]:
            rate = (metrics.get("forwards", 0) - self.last[1]) / (now - self.last[2])
        self.last = (row.name, metrics.get("forwards", 0), now)
        weights = metrics.get("weights", {})
        flushed = st.get("last_flush_t")
        interval = st.get("effective_flush_interval_s", st.get("flush_interval_s"))
        summary = (
            f"[b]{row.name}[/] pid {row.pid}  {st.get('activation')} x{st.get('units')}  lr {st.get('learning_rate')}\n"
            f"messages/s {rate:,.0f}  forwards {metrics.get('forwards', 0):,}  updates {metrics.get('updates', 0):,}\n"
            f"missed joins {metrics.get('missed_inputs', 0)}  missed gradients {metrics.get('missed_gradients', 0)}"
            f"  bad frames {metrics.get('bad_frames', 0)}\n"
            f"weights mean {weights.get('mean', 0):+.3f} std {weights.get('std', 0):.3f}\n"
            f"flush every {interval} s, last {time.time() - flushed:.1f} s ago"
            if flushed else f"flush every {interval} s, none yet")
        chemistry = st.get("neuromodulators", {})
        levels = "  ".join(f"{name[:3]} {level:.2f}" for name, level in chemistry.get("levels", {}).items())
        text.update(
            f"{summary}\n{st.get('state', 'awake')} ({st.get('state_source', 'default')})"
            f"  {st.get('plasticity', 'backprop')}  {st.get('transmitter', 'glutamate')}  region {st.get('region', '-')}\n"
            f"gain {chemistry.get('gain', 1.0):.2f}  lr x{chemistry.get('learning_rate_factor', 1.0):.2f}"
            f"  rpe {chemistry.get('rpe', 0.0):+.2f}  {levels}")
        self.query_one("#detail-histogram", Sparkline).data = weights.get("histogram", [])
