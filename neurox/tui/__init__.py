"""The Textual terminal UI (``neurox tui``); its core, the observer, is free of Textual."""
from ._observer import Endpoints as Endpoints, Observer as Observer, ObserverError as ObserverError
from ._words import (describe_reshape as describe_reshape, describe_self_reshape as describe_self_reshape,
                     shape_text as shape_text)
