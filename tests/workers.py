"""Worker processes with scripted behaviour, for the supervision tests (imported by the launcher).

Each binds a REP control socket at its ``env['control']`` and answers: ``ping`` -> ``pong``,
``exit`` -> exits with the given code, ``crash`` -> os.abort-like crash (exit code 3).
"""
import os
import signal
import time

import zmq

from neurox.runtime import EXIT_SHUTDOWN, notify_ready, pack, unpack_map


def serve(args: dict, env: dict) -> None:
    if args.get("fail_start"):
        raise SystemExit(2)
    once = args.get("fail_after_first_start")
    if once:
        if os.path.exists(once):
            raise SystemExit(2)
        open(once, "w").close()
    if args.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(EXIT_SHUTDOWN))
    if args.get("marker_dir"):
        with open(os.path.join(args["marker_dir"], f"{env['path'].replace('/', '.')}.{os.getpid()}"), "w") as f:
            f.write(str(time.time()))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(env["control"])
    notify_ready({"pid": os.getpid()})
    if args.get("exit_after_s") is not None:
        time.sleep(args["exit_after_s"])
        raise SystemExit(args.get("exit_code", 1))
    while True:
        frames = sock.recv_multipart()
        request = unpack_map(frames[-1])
        op = request.get("op")
        if op == "exit":
            sock.send_multipart([*frames[:-1], pack({"ok": True, "result": "bye", "rid": request.get("rid")})])
            time.sleep(0.01)
            os._exit(request.get("code", 0))
        sock.send_multipart([*frames[:-1], pack({"ok": True, "result": "pong", "rid": request.get("rid")})])
