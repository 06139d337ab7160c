"""Operations: the Supervisor service that keeps the picture of a running network, its Prometheus
exporter, and Telegram chat-ops (docs/operations.md)."""
from ..runtime import fan_out as fan_out
from ._client import ServiceClient as ServiceClient
from ._gateway import Gateway as Gateway, Remote as Remote, gateway_endpoint as gateway_endpoint
from ._picture import STATES as STATES
from ._prometheus import (FAMILIES as FAMILIES, MetricsServer as MetricsServer, NetworkCollector as NetworkCollector,
                          serve_metrics as serve_metrics, service_source as service_source)
from ._service import (SERVICE_ID as SERVICE_ID, Peer as Peer, ServiceConfig as ServiceConfig,
                       service_children as service_children, service_endpoint as service_endpoint)
from ..ext import TOKEN_ENV as TOKEN_ENV, BotApi as BotApi, BotApiError as BotApiError
from ._bot_config import (BotConfig as BotConfig, BotConfigError as BotConfigError,
                          RedactingFormatter as RedactingFormatter)
from ._telegram import ChatOps as ChatOps, NetworkAccess as NetworkAccess, TelegramBot as TelegramBot

PRELOAD = ("neurox.ops._service",)
"""Modules the launcher imports before forking, so the service starts without importing them itself."""
