"""``zmq_pub``: every answer of the network on a ZeroMQ PUB socket that other systems subscribe to.

Each record (docs/extensions.md, "Records") is one message of two frames, ``[topic, body]``: the topic
(``result`` by default; a subscriber may subscribe to it or to ``b""``) and the record as one msgpack
map (``encoding = "msgpack"``, NeuroX's own wire format) or one JSON object (``encoding = "json"``).

PUB semantics: a subscriber that joins late misses what came before, and one that falls more than
``hwm`` messages behind loses messages rather than slow the network down (counted by ZeroMQ, not
here). Bind to a ``tcp://`` address others can reach; ``tcp://127.0.0.1:*`` picks a free port (the
endpoint bound is in ``status`` and in the ``child_started`` event).

    [[extension]]
    name = "answers_pub"
    module = "zmq_pub"
    bind = "tcp://0.0.0.0:5601"
"""
from __future__ import annotations

import zmq

from ..neuron import Topology
from ..runtime import make_socket, pack
from ._api import OutputExtension
from ._samples import to_json
from ._settings import ExtensionError, Setting


class Extension(OutputExtension):
    settings_schema = {
        **OutputExtension.settings_schema,
        "bind": Setting("the endpoint subscribers connect to, e.g. tcp://0.0.0.0:5601 (tcp://127.0.0.1:* picks a "
                        "free port), or ipc:///path"),
        "topic": Setting("the first frame of every message", "result"),
        "encoding": Setting("the body: 'msgpack' (one map) or 'json' (one UTF-8 JSON object)", "msgpack",
                            choices=("msgpack", "json")),
        "hwm": Setting("messages queued per subscriber before that subscriber loses some", 10000, "int", minimum=1),
    }

    @classmethod
    def configure(cls, raw: dict, name: str, topology: Topology) -> dict:
        settings = super().configure(raw, name, topology)
        if not settings["bind"].startswith(("tcp://", "ipc://", "inproc://", "ws://")):
            raise ExtensionError(f"extension {name!r}: 'bind': expected a ZeroMQ endpoint such as "
                                 f"tcp://0.0.0.0:5601, got {settings['bind']!r}")
        return settings

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.topic = settings["topic"].encode()
        self.json = settings["encoding"] == "json"
        self.pub = make_socket(self.ctx, zmq.PUB, bind=settings["bind"], hwm=settings["hwm"])
        self.endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.counters.update(published=0)

    def ready_info(self) -> dict:
        return {"kind": self.kind, "endpoint": self.endpoint}

    def status(self) -> dict:
        return {**super().status(), "endpoint": self.endpoint}

    def on_records(self, records: list[dict]) -> None:
        for record in records:
            body = to_json(record).encode() if self.json else pack(record)
            self.pub.send_multipart([self.topic, body])
        self.count("published", len(records))

    def close(self) -> None:
        self.pub.close()
        super().close()
