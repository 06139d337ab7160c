"""Extensions at the edges of a network: MessengerIn/Out, streams to learn from, datasets."""
from ..supervisor_tree import ChildSpec
from ._client import AskError as AskError, MessengerClient as MessengerClient
from ._datasets import (Dataset as Dataset, DatasetError as DatasetError, digits as digits,
                        load_dataset as load_dataset)
from ._messenger_in import MESSENGER_IN_TARGET, encode_text as encode_text
from ._messenger_out import MESSENGER_OUT_TARGET, decode_outputs as decode_outputs
from ._origin import Origin as Origin
from ._stream import Stream as Stream, StreamProgress as StreamProgress

PRELOAD = ("neurox.ext._messenger_in", "neurox.ext._messenger_out")


def messenger_children(data_dir: str, timeout_ms: int = 5000, bind: list[str] = ()) -> list[ChildSpec]:
    """MessengerOut and MessengerIn as children of a network's root (after the layers)."""
    return [ChildSpec("messenger_out", MESSENGER_OUT_TARGET, {"data_dir": data_dir}, "permanent", 5000, "worker",
                      ("neurox.ext._messenger_out",)),
            ChildSpec("messenger_in", MESSENGER_IN_TARGET, {"data_dir": data_dir, "timeout_ms": timeout_ms,
                                                           "bind": list(bind)},
                      "permanent", 5000, "worker", ("neurox.ext._messenger_in",))]
