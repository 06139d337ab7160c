"""``neurox telegram --config FILE``: Telegram chat-ops for a running network (docs/operations.md).

Long-polls the Bot API until SIGTERM or Ctrl-C. The token comes from the config's ``token_file`` or
from ``$NEUROX_TELEGRAM_TOKEN`` (never from the command line, where ``ps`` would show it), and no log
line carries it. Exit status: 0 when stopped, 2 for a config or token the bot cannot use.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

import zmq

from ..ops import BotApi, BotConfig, BotConfigError, ChatOps, NetworkAccess, RedactingFormatter, TelegramBot
from ._discovery import DEFAULT_DATA_DIR, find_network


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("telegram", help="answer designated Telegram users about the network (chat-ops)")
    parser.add_argument("--config", required=True, help="the bot's TOML config (users, operators, token_file, api_url)")
    parser.add_argument("--data-dir", help=f"the running network's data directory (default: the config's "
                                           f"data_dir, else {DEFAULT_DATA_DIR})")
    parser.set_defaults(handler=telegram)


def telegram(args: argparse.Namespace) -> int:
    try:
        config = BotConfig.load(args.config)
        token = config.token()
    except BotConfigError as exc:
        print(f"neurox telegram: {exc}", file=sys.stderr, flush=True)
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s neurox telegram %(levelname)s %(message)s", [token]))
    logger = logging.getLogger("neurox.telegram")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    data_dir = args.data_dir or config.data_dir or DEFAULT_DATA_DIR
    network = NetworkAccess(zmq.Context.instance(), lambda: find_network(data_dir))
    bot = TelegramBot(BotApi(config.api_url, token), ChatOps(config, network), config.poll_timeout_s)

    def on_signal(*_):
        bot.stop()
        raise KeyboardInterrupt  # ends a long poll at once; the bot confirms what it handled and exits

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return bot.run()
