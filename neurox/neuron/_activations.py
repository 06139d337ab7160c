"""The activation functions a neuron may use (names only; the arithmetic is in ``_kernels``)."""

ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear", "softmax")


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return name
