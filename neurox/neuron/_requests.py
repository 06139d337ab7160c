"""What a neuron's control API accepts beyond the types of its arguments (``_ops``): pure checks of
``set_params`` and ``inject`` requests against the neuron's shape.

Each refusal is a ``Reply`` whose detail says what is accepted; a refused request changes nothing.
Nothing that is not finite is accepted into a weight, a setting or a computed vector (``non_finite``).
"""
from __future__ import annotations

import math

import numpy as np

from ..runtime import Reply, given
from ._activations import check_activation
from ._frames import array_from_wire
from ._ops import SetParams, WireArray

SETTABLE = ("activation", "learning_rate", "flush_interval_s", "join_timeout_ms")
POSITIVE = ("learning_rate", "flush_interval_s", "join_timeout_ms")
FLAGS = ("learning", "frozen")
"""``learning``: learn from packets marked so; ``frozen``: pass gradients upstream, keep the weights."""


def checked_set_params(args: SetParams, weights: np.ndarray, bias: np.ndarray) -> tuple:
    """``(weights, bias, settings, flags)`` after a ``set_params`` request: the arrays given (or, with
    ``add: true``, added to the current ones -- how a neuron takes back what its twin learnt), the
    settings and flags given. Reply ``bad_request``, ``wrong_shape`` or ``non_finite`` otherwise."""
    request = given(args)
    if not any(key in request for key in ("weights", "bias", *SETTABLE, *FLAGS)):
        raise Reply("bad_request", f"nothing to set; give weights, bias, {', '.join(SETTABLE)}, learning or frozen")
    arrays = {"weights": weights, "bias": bias}
    for key, current in list(arrays.items()):
        if key in request:
            array = array_argument(request[key])
            if array.shape != current.shape:
                raise Reply("wrong_shape", f"{key} must have shape {list(current.shape)}, got {list(array.shape)}")
            if request.get("add"):
                with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
                    array = current + array
            if not np.isfinite(array).all():
                raise Reply("non_finite", f"{key} would hold nan or inf")
            arrays[key] = array
    settings = {key: request[key] for key in SETTABLE if key in request}
    if "activation" in settings:
        try:
            check_activation(settings["activation"])
        except ValueError as exc:
            raise Reply("bad_request", str(exc)) from None
    for key in POSITIVE:
        value = settings.get(key, 1)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
            raise Reply("bad_request", f"{key} must be a positive finite number")
    return arrays["weights"], arrays["bias"], settings, {key: bool(request[key]) for key in FLAGS if key in request}


def checked_vector(vector, fan_in: int, owner: str) -> np.ndarray:
    """One row of ``fan_in`` finite numbers, as ``inject`` takes it."""
    if not isinstance(vector, list) or len(vector) != fan_in:
        raise Reply("wrong_shape", f"{owner} takes {fan_in} input values")
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 is refused just below
            x = np.asarray(vector, dtype=np.float32).reshape(1, fan_in)
    except (TypeError, ValueError):
        raise Reply("bad_request", "'vector' must hold numbers") from None
    if not np.isfinite(x).all():
        raise Reply("non_finite", "'vector' holds nan or inf")
    return x


def array_argument(value: WireArray) -> np.ndarray:
    """The float32 array of a request's ``{"shape", "data"}``; Reply ``bad_request`` if its bytes do not fill it."""
    try:
        return array_from_wire({"shape": value.shape, "data": value.data})
    except ValueError as exc:
        raise Reply("bad_request", f"an array is {{'shape': [..], 'data': <float32 bytes>}} ({exc})") from None
