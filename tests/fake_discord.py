"""A local fake Discord for the real discord.py client: API v10 REST and the gateway websocket, in
process (aiohttp, which discord.py ships with), on 127.0.0.1.

It speaks what a non-sharded bot uses: ``GET /users/@me`` (the token check of login),
``GET /oauth2/applications/@me`` and ``/applications/@me``, the application-command sync (``PUT``
global and guild commands; Discord's main validation rules, answered with ids), channel messages
(``POST`` JSON or multipart with attachments, ``PATCH``), interaction callbacks and webhook
follow-ups; and the gateway: HELLO -> IDENTIFY (token checked, else close 4004) -> READY ->
GUILD_CREATE, heartbeat ACKs, RESUME, compressed as the client asks (zstd-stream or zlib-stream).
:meth:`FakeDiscord.slash` and :meth:`FakeDiscord.press` send INTERACTION_CREATE built from the
published interaction bodies in tests/fixtures/discord (see its PROVENANCE.md), with the fields
Discord's Interaction object always carries (application_id, version, channel, ...) filled in.

It keeps Discord's rules that a bot can break: an interaction is answered once and within 3 s
(else 10062 Unknown interaction), a follow-up needs the answer first, a message must not be empty
and fits Discord's limits, a thinking defer is replaced by the first follow-up. Every request is
recorded (also the unknown ones, answered 404), and tests wait on what was recorded, never on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.support import local_http_server

FIXTURES = Path(__file__).parent / "fixtures" / "discord"
EXAMPLES = {k: v["payload"] for k, v in json.loads((FIXTURES / "discord_api_docs_examples.json").read_text()).items()}
DOCS = {
    k: v["payload"] for k, v in json.loads((FIXTURES / "discord_interactions_official_docs.json").read_text()).items()
}
BODIES = json.loads((FIXTURES / "discord_interactions_js_test_bodies.json").read_text())

API = "/api/v10"
ANSWER_WITHIN = 3.0  # seconds Discord gives a bot to answer an interaction
EPHEMERAL, LOADING = 1 << 6, 1 << 7  # message flags
DISCORD_EPOCH_MS = 1420070400000
STRING, INTEGER = 3, 4  # application command option types


@dataclass
class Request:
    """One REST request as the fake saw it and answered it."""

    method: str
    path: str  # after /api/v10, e.g. /channels/1/messages
    query: dict[str, str]
    auth: str | None  # the Authorization header
    body: Any  # the JSON body, or a multipart body's payload_json
    files: list[dict[str, Any]]  # multipart files: {"field", "filename", "size", "content_type"}
    status: int = 0
    known: bool = True


@dataclass
class Interaction:
    """An INTERACTION_CREATE the fake sent, and how the bot answered it."""

    payload: dict[str, Any]
    sent_at: float
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # the callback bodies
    messages: list[dict[str, Any]] = field(default_factory=list)  # messages its answers made, as stored
    original: int | None = None  # the message id of the original response
    loading: bool = False  # a thinking defer not yet replaced by a follow-up

    @property
    def id(self) -> str:
        return str(self.payload["id"])

    @property
    def token(self) -> str:
        return str(self.payload["token"])

    def texts(self) -> list[str]:
        """The content of what the bot answered, in order (a replaced thinking message counts once)."""
        return [m.get("content", "") for m in self.messages]


class Invalid(Exception):
    """A request Discord would refuse: (status, JSON error body)."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, "code": code} | ({"errors": errors} if errors else {})


def form_error(where: str, message: str) -> Invalid:
    return Invalid(
        400, 50035, "Invalid Form Body", {where: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": message}]}}
    )


class Gateway:
    """One gateway connection: its compression and sequence."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws, self.compress, self.seq = ws, compress, 0
        self.session_id: str | None = None
        if compress == "zstd-stream":
            import zstandard

            self._zstd = zstandard.ZstdCompressor().compressobj()
            self._flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        elif compress == "zlib-stream":
            self._zlib = zlib.compressobj()

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        if self.compress == "zstd-stream":
            await self.ws.send_bytes(self._zstd.compress(data) + self._zstd.flush(self._flush))
        elif self.compress == "zlib-stream":
            await self.ws.send_bytes(self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH))
        else:
            await self.ws.send_str(data.decode())

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        await self.send({"op": 0, "t": event, "s": self.seq, "d": data})


class FakeDiscord:
    """Discord for one bot (``token``) in one server (``guild_id``) with text ``channels``; a
    channel in ``forbidden`` answers 403 Missing Access, as when the bot was removed from it."""

    def __init__(self, token: str, *, guild_id: int, channels: list[int], app_id: int = 172150183260323840) -> None:
        self.token, self.guild_id, self.channels, self.app_id = token, guild_id, list(channels), app_id
        self.forbidden: set[int] = set()
        self.gateway_token = token  # what IDENTIFY must carry (a test may make it differ from REST's)
        self.interactions_endpoint_url: str | None = None  # set: Discord sends interactions there, not here
        self.base_url = ""  # http://127.0.0.1:PORT, once serving
        self.requests: list[Request] = []
        self.received: list[dict[str, Any]] = []  # gateway payloads from the client
        self.connects: list[dict[str, str]] = []  # each gateway connection's query
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None: global) -> synced
        self.messages: dict[int, dict[str, Any]] = {}
        self.interactions: dict[str, Interaction] = {}
        self.gateways: list[Gateway] = []
        self.sessions: set[str] = set()
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        example = EXAMPLES["user"]
        self.bot_user = {k: example[k] for k in ("discriminator", "avatar", "public_flags", "flags")} | {
            "id": str(self.snowflake()),
            "username": "tradeops",
            "global_name": None,
            "bot": True,
        }

    # --- serving ---

    @property
    def api_url(self) -> str:
        return self.base_url + API

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.gateway)
        app.router.add_route("*", "/{tail:.*}", self.rest)
        return app

    def snowflake(self) -> int:
        return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._ids) & 0x3FFFFF)

    async def changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, check: Callable[[], Any], seconds: float = 10.0) -> Any:
        """``check()``'s first truthy value, re-checked at each request or gateway payload received."""
        found: list[Any] = []

        def ready() -> bool:
            found[:] = [check()]
            return bool(found[0])

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(ready), seconds)
        except TimeoutError:
            seen = [f"{r.method} {r.path} {r.status}" for r in self.requests]
            raise AssertionError(f"timed out after {seconds} s; requests: {seen}") from None
        return found[0]

    def seen(self, method: str, pattern: str, status: int | None = 200) -> list[Request]:
        """The recorded requests of ``method`` whose path fully matches ``pattern`` (a regex)."""
        return [
            r
            for r in self.requests
            if r.method == method and re.fullmatch(pattern, r.path) and (status is None or r.status == status)
        ]

    def unknown(self) -> list[Request]:
        return [r for r in self.requests if not r.known]

    # --- REST ---

    async def rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(API) :] if request.path.startswith(API + "/") else request.path
        body, files = await self._read_body(request)
        record = Request(request.method, path, dict(request.query), request.headers.get("Authorization"), body, files)
        self.requests.append(record)
        try:
            status, answer = self._route(record) if request.path.startswith(API + "/") else (404, None)
        except Invalid as exc:
            status, answer = exc.status, exc.body
        if status == 404 and answer is None:
            record.known = False
            answer = {"message": "404: Not Found", "code": 0}
        record.status = status
        await self.changed()
        if status == 204:
            return web.Response(status=204)
        # exactly "application/json", as Discord sends it (discord.py compares the header verbatim)
        return web.Response(
            body=json.dumps(answer).encode(), status=status, headers={"Content-Type": "application/json"}
        )

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
        if request.content_type.startswith("multipart/"):
            body, files = None, []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader), "a nested multipart body"
                data = await part.read()
                if part.name == "payload_json":
                    body = json.loads(data)
                else:
                    kind = "image/png" if data.startswith(b"\x89PNG") else "application/octet-stream"
                    files.append(
                        {"field": part.name, "filename": part.filename, "size": len(data), "content_type": kind}
                    )
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    def _route(self, r: Request) -> tuple[int, Any]:
        p, m = r.path, r.method
        if m == "POST" and (match := re.fullmatch(r"/interactions/(\d+)/([^/]+)/callback", p)):
            return self._callback(match.group(1), match.group(2), r)  # authorised by the interaction token
        if m in ("POST", "PATCH", "GET") and (
            match := re.fullmatch(r"/webhooks/(\d+)/([^/]+)(?:/messages/([^/]+))?", p)
        ):
            return self._webhook(int(match.group(1)), match.group(2), match.group(3), r)
        if r.auth != f"Bot {self.token}":
            return 401, {"message": "401: Unauthorized", "code": 0}
        if m == "GET" and p == "/users/@me":
            return 200, self.bot_user
        if m == "GET" and p in ("/oauth2/applications/@me", "/applications/@me"):
            return 200, self.application()
        if (match := re.fullmatch(r"/applications/(\d+)(?:/guilds/(\d+))?/commands", p)) and m in ("PUT", "GET"):
            return self._commands(int(match.group(1)), int(match.group(2)) if match.group(2) else None, r)
        if m == "POST" and (match := re.fullmatch(r"/channels/(\d+)/messages", p)):
            channel = self._channel(int(match.group(1)))
            return 200, self._new_message(channel, r.body or {}, r.files)
        if m == "PATCH" and (match := re.fullmatch(r"/channels/(\d+)/messages/(\d+)", p)):
            channel = self._channel(int(match.group(1)))
            return 200, self._edit_message(channel, int(match.group(2)), r.body or {}, r.files)
        return 404, None

    def application(self) -> dict[str, Any]:
        app = copy.deepcopy(EXAMPLES["application"])
        # Owned by one user, not a team (the docs example's team member lacks today's "role").
        app.update(id=str(self.app_id), name="tradeops", bot=self.bot_user, guild_id=str(self.guild_id), team=None)
        app["interactions_endpoint_url"] = self.interactions_endpoint_url
        return app

    def _channel(self, channel_id: int) -> int:
        if channel_id in self.forbidden:
            raise Invalid(403, 50001, "Missing Access")
        if channel_id not in self.channels:
            raise Invalid(404, 10003, "Unknown Channel")
        return channel_id

    def _commands(self, app_id: int, guild_id: int | None, r: Request) -> tuple[int, Any]:
        if app_id != self.app_id:
            raise Invalid(403, 50001, "Missing Access")
        if guild_id is not None and guild_id != self.guild_id:
            raise Invalid(403, 50001, "Missing Access")  # the bot is not in that server
        if r.method == "GET":
            return 200, self.commands.get(guild_id, [])
        if not isinstance(r.body, list) or len(r.body) > 100:
            raise form_error("_root", "a list of at most 100 commands")
        synced = []
        for i, command in enumerate(r.body):
            check_command(command, f"{i}")
            done = {"type": 1, "default_member_permissions": None, "nsfw": False, **command}
            done |= {"id": str(self.snowflake()), "application_id": str(self.app_id), "version": str(self.snowflake())}
            if guild_id is not None:
                done["guild_id"] = str(guild_id)
            synced.append(done)
        self.commands[guild_id] = synced
        return 200, synced

    # --- messages ---

    def _new_message(
        self, channel_id: int, body: dict[str, Any], files: list[dict[str, Any]], **extra: Any
    ) -> dict[str, Any]:
        check_message(body, files)
        message = copy.deepcopy(EXAMPLES["message"])
        message.update(
            id=str(self.snowflake()),
            channel_id=str(channel_id),
            author=self.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds") or [],
            components=body.get("components") or [],
            attachments=[self._attachment(channel_id, f) for f in files],
            flags=body.get("flags") or 0,
            reactions=[],
            **extra,
        )
        self.messages[int(message["id"])] = message
        return message

    def _attachment(self, channel_id: int, file: dict[str, Any]) -> dict[str, Any]:
        attachment_id = self.snowflake()
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{file['filename']}"
        keep = ("filename", "size", "content_type")
        return {"id": str(attachment_id), "url": url, "proxy_url": url} | {k: file[k] for k in keep}

    def _edit_message(
        self, channel_id: int, message_id: int, body: dict[str, Any], files: list[dict[str, Any]]
    ) -> dict[str, Any]:
        message = self.messages.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id:
            raise Invalid(404, 10008, "Unknown Message")
        if message["author"]["id"] != self.bot_user["id"]:
            raise Invalid(403, 50005, "Cannot edit a message authored by another user")
        edited = dict(message)
        for key in ("content", "embeds", "components", "flags"):
            if key in body:
                edited[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body:  # the ones listed by id stay, new files are added
            kept = {str(a["id"]) for a in body["attachments"] or []}
            edited["attachments"] = [a for a in message["attachments"] if a["id"] in kept]
        edited["attachments"] = edited["attachments"] + [self._attachment(channel_id, f) for f in files]
        check_message(edited, [])
        edited["edited_timestamp"] = "2021-07-06T06:00:00.000000+00:00"
        self.messages[message_id] = edited
        return edited

    def edits(self, message_id: int) -> list[dict[str, Any]]:
        """The edit bodies a message received through the channel route, in order."""
        return [r.body for r in self.seen("PATCH", rf"/channels/\d+/messages/{message_id}")]

    # --- interactions ---

    def _interaction(self, interaction_id: str, token: str) -> Interaction:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise Invalid(404, 10062, "Unknown interaction")
        return interaction

    def _callback(self, interaction_id: str, token: str, r: Request) -> tuple[int, Any]:
        interaction = self._interaction(interaction_id, token)
        if interaction.callbacks:
            raise Invalid(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - interaction.sent_at > ANSWER_WITHIN:
            raise Invalid(404, 10062, "Unknown interaction")  # what Discord answers after the 3 s
        body = r.body or {}
        kind, data = body.get("type"), body.get("data") or {}
        component = interaction.payload["type"] == 3
        allowed = {8} if interaction.payload["type"] == 4 else ({4, 5, 6, 7} if component else {4, 5, 9})
        if kind not in allowed:
            raise form_error(
                "type", f"callback type {kind} is not valid for interaction type {interaction.payload['type']}"
            )
        interaction.callbacks.append(body)
        channel = int(interaction.payload["channel"]["id"])
        resource: dict[str, Any] = {"type": kind}
        if kind == 4:
            message = self._new_message(channel, data, r.files, webhook_id=str(self.app_id))
            interaction.messages.append(message)
            interaction.original, resource["message"] = int(message["id"]), message
        elif kind == 5:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            message = self._new_message(channel, {"flags": flags}, [], webhook_id=str(self.app_id))
            interaction.original, interaction.loading, resource["message"] = int(message["id"]), True, message
        elif kind == 7:
            source = int(interaction.payload["message"]["id"])
            message = self._edit_message(channel, source, data, r.files)
            interaction.messages.append(message)
            resource["message"] = message
        elif kind == 8 and len(data.get("choices") or []) > 25:
            raise form_error("data.choices", "Must be 25 or fewer in length.")
        if r.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        answer = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.payload["type"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(int(data.get("flags") or 0) & EPHEMERAL),
            }
            | ({"response_message_id": str(interaction.original)} if interaction.original else {}),
            "resource": resource,
        }
        return 200, answer

    def _webhook(self, app_id: int, token: str, message: str | None, r: Request) -> tuple[int, Any]:
        interaction = next((i for i in self.interactions.values() if i.token == token), None)
        if app_id != self.app_id or interaction is None or not interaction.callbacks:
            raise Invalid(404, 10015, "Unknown Webhook")  # no answer yet: the follow-up webhook does not exist
        channel = int(interaction.payload["channel"]["id"])
        body = r.body or {}
        if r.method == "POST" and message is None:
            if interaction.loading:  # the first follow-up replaces the thinking message
                interaction.loading = False
                loading = self.messages[interaction.original or 0]
                flags = (int(loading["flags"]) & EPHEMERAL) | (int(body.get("flags") or 0) & ~EPHEMERAL)
                edited = self._edit_message(channel, int(loading["id"]), body | {"flags": flags}, r.files)
                interaction.messages.append(edited)
                return 200, edited
            made = self._new_message(channel, body, r.files, webhook_id=str(self.app_id))
            interaction.messages.append(made)
            return 200, made
        target = interaction.original if message == "@original" else int(message or 0)
        if target is None or target not in self.messages:
            raise Invalid(404, 10008, "Unknown Message")
        if r.method == "GET":
            return 200, self.messages[target]
        if r.method == "PATCH":
            interaction.loading = interaction.loading and target != interaction.original
            edited = self._edit_message(channel, target, body, r.files)
            interaction.messages.append(edited)
            return 200, edited
        return 404, None

    def _base_interaction(self, kind: int, user_id: int, channel_id: int) -> dict[str, Any]:
        """Discord's documented slash-command interaction as the envelope (member, guild, locale),
        with this test's user and channel, and the fields every interaction carries today."""
        payload = copy.deepcopy(DOCS["slash_command_interaction"])
        payload["member"]["user"] |= {"id": str(user_id), "username": f"user{user_id}"}
        payload["member"]["flags"] = 0  # a guild member's flags, always sent today (the example predates them)
        interaction_id = str(self.snowflake())
        channel = copy.deepcopy(EXAMPLES["guild_text_channel"]) | {
            "id": str(channel_id),
            "guild_id": str(self.guild_id),
        }
        payload.update(
            id=interaction_id,
            type=kind,
            token=f"aW50ZXJhY3Rpb246{interaction_id}:fake-interaction-token",  # not the bot token
            application_id=str(self.app_id),
            version=BODIES["application_command"]["version"],
            guild_id=str(self.guild_id),
            channel_id=str(channel_id),
            channel=channel,
            entitlements=[],
            authorizing_integration_owners={"0": str(self.guild_id)},
            context=0,
            attachment_size_limit=10 * 1024 * 1024,
        )
        return payload

    async def slash(self, user_id: int, name: str, channel_id: int, **options: str | int) -> Interaction:
        """A user runs a synced slash command (``options`` by name) in a channel."""
        command = self._synced(name)
        payload = self._base_interaction(2, user_id, channel_id)
        types = {o["name"]: o["type"] for o in command.get("options", [])}
        unknown = set(options) - set(types)
        assert not unknown, f"/{name} has no options {sorted(unknown)}; it has {sorted(types)}"
        payload["data"] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"type": types[k], "name": k, "value": v} for k, v in options.items()],
        } | ({"guild_id": command["guild_id"]} if "guild_id" in command else {})
        return await self._send_interaction(payload)

    async def autocomplete(self, user_id: int, name: str, channel_id: int, option: str, typed: str) -> Interaction:
        """The user types ``typed`` into ``option`` of a synced command (Discord's autocomplete body)."""
        command = self._synced(name)
        payload = self._base_interaction(4, user_id, channel_id)
        data = copy.deepcopy(DOCS["autocomplete_interaction"]["data"])
        data.update(id=command["id"], name=name, version=command["version"])
        data["options"] = [{"type": STRING, "name": option, "value": typed, "focused": True}]
        payload["data"] = data
        return await self._send_interaction(payload)

    async def press(self, user_id: int, message_id: int, custom_id: str) -> Interaction:
        """The user presses the button ``custom_id`` of a message the bot sent (as stored now)."""
        message = self.messages[message_id]
        buttons = [c for row in message.get("components", []) for c in row.get("components", [])]
        assert any(b.get("custom_id") == custom_id for b in buttons), f"no button {custom_id} on message {message_id}"
        payload = self._base_interaction(3, user_id, int(message["channel_id"]))
        payload.pop("guild_locale")
        payload["data"] = {**copy.deepcopy(BODIES["message_component"]["data"]), "custom_id": custom_id}
        payload["message"] = copy.deepcopy(message)
        return await self._send_interaction(payload)

    def _synced(self, name: str) -> dict[str, Any]:
        for commands in (self.commands.get(self.guild_id, []), self.commands.get(None, [])):
            for command in commands:
                if command["name"] == name:
                    return command
        raise AssertionError(f"/{name} was never synced; Discord would not send it")

    async def _send_interaction(self, payload: dict[str, Any]) -> Interaction:
        interaction = Interaction(payload, time.monotonic())
        self.interactions[interaction.id] = interaction
        await self.current().dispatch("INTERACTION_CREATE", payload)
        return interaction

    async def answered(self, interaction: Interaction, count: int = 1, seconds: float = 10.0) -> list[str]:
        """Waits until the bot made ``count`` messages for ``interaction``; their texts."""
        await self.until(lambda: len(interaction.messages) >= count and not interaction.loading, seconds)
        return interaction.texts()

    # --- gateway ---

    def current(self) -> Gateway:
        live = [g for g in self.gateways if g.session_id is not None and not g.ws.closed]
        assert live, "no bot is connected to the gateway"
        return live[-1]

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connects.append(dict(request.query))
        gateway = Gateway(ws, request.query.get("compress"))
        self.gateways.append(gateway)
        await gateway.send(EXAMPLES["hello"])
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            payload = json.loads(msg.data)
            self.received.append(payload)
            await self._on_gateway(gateway, payload)
            await self.changed()
        await self.changed()
        return ws

    async def _on_gateway(self, gateway: Gateway, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d") or {}
        if op == 1:
            await gateway.send(EXAMPLES["heartbeat_ack"])
        elif op == 2:
            if data.get("token") != self.gateway_token:
                await gateway.ws.close(code=4004, message=b"Authentication failed.")
                return
            gateway.session_id = f"session{self.snowflake()}"
            self.sessions.add(gateway.session_id)
            unavailable = EXAMPLES["unavailable_guild"] | {"id": str(self.guild_id)}
            await gateway.dispatch(
                "READY",
                {
                    "v": 10,
                    "user": self.bot_user,
                    "guilds": [unavailable],
                    "session_id": gateway.session_id,
                    "resume_gateway_url": self.gateway_url,
                    "application": {"id": str(self.app_id), "flags": EXAMPLES["application"]["flags"]},
                },
            )
            await gateway.dispatch("GUILD_CREATE", self.guild())
        elif op == 6:
            if data.get("token") != self.gateway_token:
                await gateway.ws.close(code=4004, message=b"Authentication failed.")
            elif data.get("session_id") in self.sessions:
                gateway.session_id, gateway.seq = data["session_id"], int(data.get("seq") or 0)
                await gateway.dispatch("RESUMED", {})
            else:
                await gateway.send({"op": 9, "d": False})
        elif op not in (3, 4, 8):
            await gateway.ws.close(code=4001, message=b"Unknown opcode.")

    def guild(self) -> dict[str, Any]:
        guild = copy.deepcopy(EXAMPLES["guild"])
        channel = EXAMPLES["guild_text_channel"]
        guild.update(
            id=str(self.guild_id),
            name="tradeops test server",
            unavailable=False,
            member_count=3,
            large=False,
            joined_at="2021-07-01T00:00:00.000000+00:00",
            members=[],
            voice_states=[],
            presences=[],
            threads=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            channels=[channel | {"id": str(c), "guild_id": str(self.guild_id), "name": f"c{c}"} for c in self.channels],
        )
        return guild

    async def close(self) -> None:
        for gateway in self.gateways:
            if not gateway.ws.closed:
                await gateway.ws.close(code=1001, message=b"going away")


def check_command(command: dict[str, Any], where: str) -> None:
    """Discord's main rules for a CHAT_INPUT command (names, descriptions, options, choices)."""
    name_rule = re.compile(r"^[-_'\w]{1,32}$")
    if not name_rule.match(command.get("name", "")) or command["name"] != command["name"].lower():
        raise form_error(f"{where}.name", "Command name is invalid")
    if not 1 <= len(command.get("description") or "") <= 100:
        raise form_error(f"{where}.description", "Must be between 1 and 100 in length.")
    options = command.get("options") or []
    if len(options) > 25:
        raise form_error(f"{where}.options", "Must be 25 or fewer in length.")
    required = [bool(o.get("required")) for o in options]
    if required != sorted(required, reverse=True):
        raise form_error(f"{where}.options", "Required options must be placed before non-required options")
    for j, option in enumerate(options):
        at = f"{where}.options.{j}"
        if not name_rule.match(option.get("name", "")) or option["name"] != option["name"].lower():
            raise form_error(f"{at}.name", "Command option name is invalid")
        if not 1 <= len(option.get("description") or "") <= 100:
            raise form_error(f"{at}.description", "Must be between 1 and 100 in length.")
        if len(option.get("choices") or []) > 25:
            raise form_error(f"{at}.choices", "Must be 25 or fewer in length.")
        if option.get("choices") and option.get("autocomplete"):
            raise form_error(f"{at}.autocomplete", "Autocomplete cannot be set with choices")


def check_message(body: dict[str, Any], files: list[dict[str, Any]]) -> None:
    """Discord's message rules a bot can break: not empty, content, embed and component limits."""
    content, embeds = body.get("content") or "", body.get("embeds") or []
    rows = body.get("components") or []
    if (
        not (content or embeds or rows or files or body.get("attachments"))
        and not int(body.get("flags") or 0) & LOADING
    ):
        raise Invalid(400, 50006, "Cannot send an empty message")
    if len(content) > 2000:
        raise form_error("content", "Must be 2000 or fewer in length.")
    if len(embeds) > 10:
        raise form_error("embeds", "Must be 10 or fewer in length.")
    for i, embed in enumerate(embeds):
        texts = [
            embed.get("title") or "",
            embed.get("description") or "",
            (embed.get("footer") or {}).get("text") or "",
        ]
        if len(texts[0]) > 256 or len(texts[1]) > 4096 or sum(map(len, texts)) > 6000:
            raise form_error(f"embeds.{i}", "Embed size exceeds maximum size of 6000")
    ids = [c.get("custom_id") for row in rows for c in row.get("components", []) if c.get("custom_id")]
    if len(rows) > 5 or any(len(row.get("components", [])) > 5 for row in rows):
        raise form_error("components", "Must be 5 or fewer in length.")
    if any(len(i) > 100 for i in ids) or len(ids) != len(set(ids)):
        raise form_error("components", "Component custom id cannot be duplicated or longer than 100")


@contextlib.asynccontextmanager
async def serving(fake: FakeDiscord) -> AsyncIterator[FakeDiscord]:
    """``fake`` served on 127.0.0.1 at a free port; its websockets closed before the server stops."""
    async with local_http_server(fake.app()) as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            await fake.close()
