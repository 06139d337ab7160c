"""A neuron's detail: settings, learning (paused, frozen), weight statistics and histogram, messages/s, misses,
flushes, state and neuromodulators."""
from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from .._observer import ProcessRow
from .._words import learning_state, processing_line

LEARNING_STYLE = {"learning": "green", "paused": "b yellow", "frozen": "b cyan"}


class NeuronDetail(Vertical):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.last: tuple[str, int, float] | None = None
        """The shown neuron's ``(name, forwards, uptime_s)`` when last seen: its messages/s are counted
        between two of its own reports."""
        self.rate = 0.0

    def compose(self) -> ComposeResult:
        yield Static("[dim]select a neuron[/]", id="detail-text")
        yield Sparkline([], id="detail-histogram")

    def show(self, row: ProcessRow | None) -> None:
        text = self.query_one("#detail-text", Static)
        if row is None or not row.is_neuron:
            text.update("[dim]select a neuron in the tree[/]")
            self.query_one("#detail-histogram", Sparkline).data = []
            return
        st, metrics = row.status, row.status.get("metrics", {})
        forwards, uptime = metrics.get("forwards", 0), float(st.get("uptime_s", 0.0))
        if self.last is None or self.last[0] != row.name or uptime < self.last[2]:
            self.rate = 0.0
        elif uptime > self.last[2]:
            self.rate = max(0.0, (forwards - self.last[1]) / (uptime - self.last[2]))
        self.last = (row.name, forwards, uptime)
        weights = metrics.get("weights", {})
        flushed = st.get("last_flush_t")
        interval = st.get("effective_flush_interval_s", st.get("flush_interval_s"))
        learning = learning_state(st)
        chemistry = st.get("neuromodulators", {})
        levels = "  ".join(f"{name[:3]} {level:.2f}" for name, level in chemistry.get("levels", {}).items())
        lines = [  # short lines: the panel is 38 columns wide on an 80-column terminal
            f"[b]{row.name}[/]  pid {row.pid}  [{LEARNING_STYLE[learning]}]{learning}[/]",
            f"{st.get('activation')} x{st.get('units')}  lr {st.get('learning_rate')}  {st.get('plasticity', 'backprop')}",
            f"{st.get('state', 'awake')} ({st.get('state_source', 'default')})  region {st.get('region', '-')}",
            f"msg/s {self.rate:,.0f}  fwd {forwards:,}  upd {metrics.get('updates', 0):,}",
            f"missed joins {metrics.get('missed_inputs', 0)}  grads {metrics.get('missed_gradients', 0)}"
            f"  bad frames {metrics.get('bad_frames', 0)}",
            f"weights mean {weights.get('mean', 0):+.3f} std {weights.get('std', 0):.3f}",
            processing_line(metrics.get("processing") or {}),
            "[red]persistence degraded[/]: serving from memory, retrying" if st.get("persistence") == "degraded"
            else f"flush every {interval} s, last {time.time() - flushed:.1f} s ago" if flushed
            else f"flush every {interval} s, none yet",
            f"{st.get('transmitter', 'glutamate')} gain {chemistry.get('gain', 1.0):.2f}"
            f" lr×{chemistry.get('learning_rate_factor', 1.0):.2f} rpe {chemistry.get('rpe', 0.0):+.2f}  {levels}",
        ]
        text.update("\n".join(lines))
        self.query_one("#detail-histogram", Sparkline).data = weights.get("histogram", [])
