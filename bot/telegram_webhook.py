"""Webhook mode of the Telegram transport: Telegram POSTs each update to a public https URL, which a
reverse proxy (terminating TLS) forwards to python-telegram-bot's own server (tornado) on
LISTEN:PORT, with the same path. Every request must carry the secret token in the
``X-Telegram-Bot-Api-Secret-Token`` header; any other request gets 403 and is not handled.

The path is the webhook URL's own (never the bot token: a path ends up in proxy and access logs).
The secret is TRADEOPS_TELEGRAM_WEBHOOK_SECRET, or a random one made at each start and registered
with setWebhook; it is registered with the log redaction and never logged.

On stop the webhook stays set at Telegram: updates sent meanwhile wait there (up to 24 hours) and
arrive when the bot is back, and another process serving the same URL (scale-out) keeps receiving.
Switching back to polling deletes it (python-telegram-bot's start_polling always does).

While running, Telegram is asked every ``check_seconds`` where it posts: when another process has
set its own webhook, or deleted it to poll, this one would receive nothing more, so the transport
asks the run to stop (webhook mode's counterpart of polling's 409 Conflict).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from telegram import Bot, WebhookInfo
from telegram.error import TelegramError
from telegram.ext import Application

from bot.logs import redact, register_secret
from bot.settings import Settings
from bot.telegram_render import DEFAULT_API_URL, api_urls
from bot.transport import TransportError

log = logging.getLogger("bot.telegram")
TELEGRAM_PORTS = (443, 80, 88, 8443)  # the ports Telegram's own servers post to (setWebhook)


@dataclass(frozen=True)
class Webhook:
    url: str  # the public URL Telegram posts to
    listen: str  # address of the local server
    port: int  # its port
    path: str  # the URL's path, which the local server answers
    secret: str = field(repr=False)  # X-Telegram-Bot-Api-Secret-Token; never logged
    check_seconds: float = 60.0  # how often Telegram is asked whether it still posts here

    @property
    def local(self) -> str:
        return f"http://{self.listen}:{self.port}{self.path}"


def webhook_config(settings: Settings, token: str) -> Webhook | None:
    """The webhook of TRADEOPS_TELEGRAM_WEBHOOK_* (None: long polling). A secret is made when none is
    set. Raises ValueError, naming the setting, for a URL that carries the token, or plain http
    (or an unusual port) with Telegram's own Bot API, which posts only to https on ports 443, 80,
    88 and 8443 (a self-hosted Bot API server, TRADEOPS_TELEGRAM_API_URL, takes any)."""
    url = settings.telegram_webhook_url
    if url is None:
        return None
    if any(part and part in url for part in (token, token.partition(":")[2])):
        raise ValueError(
            "TRADEOPS_TELEGRAM_WEBHOOK_URL contains the bot token: a URL path lands in proxy and access logs; "
            "use a path of your own, like https://bot.example.com/telegram (the secret token guards it)"
        )
    parts = urlsplit(url)
    if api_urls(settings.telegram_api_url)[0] == DEFAULT_API_URL:
        if parts.scheme != "https":
            raise ValueError(
                "TRADEOPS_TELEGRAM_WEBHOOK_URL must be https: Telegram posts only to https URLs "
                "(put a TLS reverse proxy in front of TRADEOPS_TELEGRAM_WEBHOOK_LISTEN:PORT)"
            )
        if (parts.port or 443) not in TELEGRAM_PORTS:
            raise ValueError(
                f"TRADEOPS_TELEGRAM_WEBHOOK_URL has port {parts.port}: Telegram posts only to ports "
                f"{', '.join(map(str, TELEGRAM_PORTS))}"
            )
    given = settings.telegram_webhook_secret
    secret = given.get_secret_value() if given is not None else secrets.token_urlsafe(32)  # A-Za-z0-9_-
    register_secret(secret)
    listen, port = settings.telegram_webhook_listen.strip(), settings.telegram_webhook_port
    return Webhook(url=url, listen=listen, port=port, path=parts.path or "/", secret=secret)


async def start_webhook(app: Application[Any, Any, Any, Any, Any, Any], hook: Webhook, updates: Sequence[str]) -> None:
    """setWebhook (URL, secret, allowed updates; pending updates kept) and the local server, on a
    started Application. Raises TransportError when the server cannot listen; TelegramError when
    Telegram refuses the webhook."""
    assert app.updater is not None
    before = await app.bot.get_webhook_info()
    if before.url and before.url != hook.url:
        log.warning("telegram: replacing the webhook %s (whatever serves it receives nothing more)", before.url)
    elif not before.url:
        log.info("telegram: no webhook was set; a process polling this token gets 409 Conflict from now on")
    try:
        await app.updater.start_webhook(
            listen=hook.listen,
            port=hook.port,
            url_path=re.escape(hook.path),  # python-telegram-bot routes it as a regular expression
            webhook_url=hook.url,
            secret_token=hook.secret,
            allowed_updates=list(updates),
            drop_pending_updates=False,
        )
    except OSError as exc:
        raise TransportError(
            f"the Telegram webhook server cannot listen on {hook.listen}:{hook.port} ({exc.strerror or exc}): "
            "set TRADEOPS_TELEGRAM_WEBHOOK_LISTEN and TRADEOPS_TELEGRAM_WEBHOOK_PORT to a free address"
        ) from None
    log.info("telegram: webhook set to %s; listening on %s", hook.url, hook.local)


async def watch_webhook(bot: Bot, hook: Webhook, on_lost: Callable[[str], None]) -> None:
    """Until cancelled, every ``hook.check_seconds``: getWebhookInfo. When Telegram posts elsewhere
    (another process set its webhook, or deleted it to poll), calls ``on_lost`` once with what
    happened and what to do, and returns. A failed check is logged and tried again next round."""
    while True:
        await asyncio.sleep(hook.check_seconds)
        try:
            info = await bot.get_webhook_info()
        except TelegramError as exc:
            log.warning("telegram: webhook check failed, next in %g s: %s", hook.check_seconds, redact(str(exc)))
            continue
        if info.url != hook.url:
            now = f"to {info.url}" if info.url else "nowhere (the webhook was deleted: a poller?)"
            on_lost(
                f"Telegram now posts this bot's updates {now}, not to {hook.url}: another process took the "
                "token; stop it, or use another bot token"
            )
            return


def describe(info: WebhookInfo, configured: str | None) -> str:
    """What Telegram has (getWebhookInfo) against what is configured, for `tradeops doctor`: the
    mode, the URL Telegram posts to, pending updates and the last delivery error. Never the secret
    (Telegram does not return it)."""
    if configured is None:
        if not info.url:
            return "long polling (no webhook set at Telegram)"
        return f"long polling; Telegram has the webhook {info.url} set: `tradeops run` deletes it at start"
    if not info.url:
        state = f"webhook mode ({configured}); Telegram has no webhook yet: `tradeops run` sets it"
    elif info.url != configured:
        state = f"webhook mode ({configured}); Telegram posts to {info.url}: `tradeops run` replaces it"
    else:
        state = f"webhook mode: Telegram posts to {info.url}"
    state += f"; {info.pending_update_count} updates pending"
    if info.last_error_message:
        when = f" at {info.last_error_date.isoformat()}" if info.last_error_date else ""
        state += f"; last delivery error{when}: {info.last_error_message}"
    return state
