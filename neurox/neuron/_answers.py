"""What the end of the network answers for each packet: its result map (docs/protocol.md, "Returns").

The end neuron makes one result map per packet from its outputs -- the arg-max label and its name, or
the raw vector; a regression answer in the user's units; without the rows awake replay appended -- and
returns the maps to the packet's origin (``_returns``). MessengerOut makes the same maps to score the
answers and publish them to the output extensions. Pure functions of the outputs and the packet's meta.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..runtime import FrameError, unpack_map
from ._math import output_gradient


class Answer(NamedTuple):
    """One packet's answer: its result map, its outputs (the user's rows only) and its meta, unpacked."""

    result: dict
    outputs: np.ndarray
    meta: dict


def answers_of(packets: list, rows: list, outputs: np.ndarray, metas: list, losses: list, activation: str,
               output_config: dict) -> list[Answer]:
    """The answer to each packet of an output bundle (``rows`` each, stacked in ``outputs``)."""
    answers, at = [], 0
    for packet, count, meta, loss in zip(packets, rows, metas, losses):
        own = outputs[at:at + count]
        at += count
        meta = _meta_of(meta)
        own, meta, loss = forget_recalled(own, meta, loss, activation)
        own = to_user_units(own, meta)
        result = {"packet": packet, "rows": own.shape[0], "output": own.tobytes(), "width": own.shape[1],
                  "loss": loss, **decode_outputs(own, output_config)}
        answers.append(Answer(result, own, meta))
    return answers


def _meta_of(meta) -> dict:
    """A packet's meta as a map; an empty one for a meta that is not a msgpack map (no origin to answer)."""
    try:
        return unpack_map(meta) if isinstance(meta, bytes) else {}
    except FrameError:
        return {}


def decode_outputs(outputs: np.ndarray, output_config: dict) -> dict:
    """The answer map for rows of end-node outputs: labels (and names), or nothing beyond the vectors."""
    if output_config.get("decode", "label") != "label":
        return {}
    labels = outputs.argmax(axis=1).tolist()
    answer = {"label": labels}
    names = output_config.get("labels")
    if names:
        answer["text"] = [names[i] if i < len(names) else str(i) for i in labels]
    return answer


def to_user_units(outputs: np.ndarray, meta: dict) -> np.ndarray:
    """A regression answer in the user's units, with the scale its packet's meta carries (as it is
    without one: a classification answer, or a packet that did not pass MessengerIn's Front)."""
    units = meta.get("units")
    if not isinstance(units, dict):
        return outputs
    try:
        offset = np.asarray(units["offset"], dtype=np.float64)
        factor = np.asarray(units["factor"], dtype=np.float64)
        return (outputs * factor + offset).astype(np.float32)
    except (KeyError, TypeError, ValueError):
        return outputs


def forget_recalled(outputs: np.ndarray, meta: dict, loss, activation: str) -> tuple[np.ndarray, dict, float | None]:
    """A packet's answer without the rows awake replay appended to it (``meta["recalled"]`` of them, at its
    end): the outputs, the meta (its targets as the origin sent them) and the loss of the origin's rows
    alone (as the end neuron computes it). Unchanged for a packet with none."""
    recalled = meta.get("recalled")
    if not isinstance(recalled, int) or isinstance(recalled, bool) or not 0 < recalled < len(outputs):
        return outputs, meta, loss
    own = len(outputs) - recalled
    targets = meta.get("targets")
    if not isinstance(targets, list) or len(targets) != len(outputs):
        return outputs[:own], meta, loss
    outputs, targets = outputs[:own], targets[:own]
    if loss is not None:
        try:
            loss = output_gradient(outputs, targets, activation)[1]  # the end neuron's loss, its rows only
        except (TypeError, ValueError, IndexError):
            loss = None
    return outputs, {**meta, "targets": targets}, loss
