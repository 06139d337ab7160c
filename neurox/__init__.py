"""NeuroX: a living neural network of supervised OS processes.

``neurox.Client`` is the client for MessengerIn that loses nothing (docs/protocol.md); it is imported
on first use so that ``import neurox`` stays cheap for the command line.
"""

__all__ = ["Client"]


def __getattr__(name: str):
    if name == "Client":
        from .ext import Client

        return Client
    raise AttributeError(f"module 'neurox' has no attribute {name!r}")
