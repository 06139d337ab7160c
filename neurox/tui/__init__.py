"""The Textual terminal UI (``neurox tui``); its core, the observer, is free of Textual."""
from ._observer import Endpoints as Endpoints, Observer as Observer, ObserverError as ObserverError
