"""`callstt gateway`: WebSocket clients in Deepgram's live-API shape, Kafka behind them.

One connection per call stream (or per call, one stream a channel, with multichannel). The
gateway holds no call state of its own: a stream's position lives in Kafka (the audio topic and
the gateway-sessions topic), so any number of gateways serve behind a load balancer and a
client whose gateway died reconnects to another and goes on (streams/gateway/session.py).

Per connection, three tasks: `read_audio` (frames -> chunks -> producer, at most
MAX_IN_FLIGHT unacknowledged and no further than CALLSTT_GATEWAY_MAX_AHEAD_S ahead of real
time), `acknowledge` (the broker's acknowledgements, in order: the stream's mark moves, and the
client hears `Acknowledged` when it asked), and `deliver` (the call's records from the
follower, as Deepgram messages, each final once).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import signal
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import WSMsgType, web
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from callstt.schemas.records import AudioChunk, spoken_utterance
from callstt.streams.gateway import protocol
from callstt.streams.gateway.kafka_side import Delivered, GatewayKafka
from callstt.streams.gateway.protocol import BadRequest, ListenRequest, parse_listen
from callstt.streams.gateway.session import FrameCutter, Pacer, StreamLeg, StreamMark
from callstt.streams.settings import Settings
from callstt.streams.web_auth import SESSION_COOKIE, WebAccess, middleware

log = logging.getLogger("callstt.gateway")

MAX_IN_FLIGHT = 100  # chunks handed to the producer and not yet acknowledged, per connection
MARK_EVERY_S = 1.0  # how often a stream's mark follows its acknowledged audio
PAGE = Path(__file__).with_name("listen.html")

REGISTRY = CollectorRegistry(auto_describe=True)
CONNECTIONS = Gauge("callstt_gateway_connections", "Open WebSocket connections", registry=REGISTRY)
REFUSED = Counter("callstt_gateway_refused_total", "Connections refused before the upgrade, by reason", ["reason"],
                  registry=REGISTRY)
RESUMED = Counter("callstt_gateway_resumed_streams_total", "Streams taken up again after a reconnection",
                  registry=REGISTRY)
AUDIO_SECONDS = Counter("callstt_gateway_audio_seconds_total", "Audio acknowledged by the broker", registry=REGISTRY)
MESSAGES = Counter("callstt_gateway_messages_total", "Messages sent to clients, by type", ["type"], registry=REGISTRY)
CLOSES = Counter("callstt_gateway_closes_total", "Connections ended, by WebSocket close code", ["code"],
                 registry=REGISTRY)


def refused(status: int, reason: str, code: str, message: str, request_id: str) -> web.Response:
    REFUSED.labels(reason).inc()
    return web.json_response({"err_code": code, "err_msg": message, "request_id": request_id}, status=status,
                             headers={"dg-request-id": request_id})


def offered_token(request: web.Request) -> tuple[str | None, bool]:
    """The credential a connection offers, and whether it came as Deepgram's subprotocol
    (`Sec-WebSocket-Protocol: token, <key>`, for clients that cannot set headers): `Authorization:
    Token <key>` (Deepgram's SDKs), `Bearer <key>`, the subprotocol, or the page's session cookie."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip(), False
    protocols = [part.strip() for part in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if len(protocols) == 2 and protocols[0].lower() in ("token", "bearer") and protocols[1]:
        return protocols[1], True
    return None, False


class Gateway:
    """The aiohttp application and the Kafka clients it shares among its connections."""

    def __init__(self, settings: Settings, access: WebAccess) -> None:
        self.settings, self.access = settings, access
        self.kafka = GatewayKafka(settings)
        self.connections: set[Connection] = set()
        self.open_streams: dict[tuple[str, str], Connection] = {}  # (call, stream) -> its connection here

    def web_app(self) -> web.Application:
        # /v1/listen checks its own credential (a client token with its calls); the page holds no
        # call content: what it shows comes through the socket
        open_paths = self.access.open_paths | {"/v1/listen", "/listen", "/"}
        app = web.Application(middlewares=[middleware(replace(self.access, open_paths=open_paths))])
        app.router.add_get("/v1/listen", self.listen)
        app.router.add_get("/listen", self.page)
        app.router.add_get("/", self.page)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.on_startup.append(lambda _: self.kafka.start())
        app.on_shutdown.append(lambda _: self.close_all())
        app.on_cleanup.append(lambda _: self.kafka.stop())
        return app

    async def health(self, request: web.Request) -> web.Response:
        failure = self.kafka.follower.failure
        status = {"status": "ok" if failure is None else "failing", "connections": len(self.connections),
                  **({"error": failure} if failure else {})}
        return web.json_response(status, status=200 if failure is None else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), content_type="text/plain", charset="utf-8")

    async def page(self, request: web.Request) -> web.Response:
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def close_all(self) -> None:
        for connection in list(self.connections):
            await connection.ws.close(code=1012, message=b"the gateway is stopping: reconnect")

    async def listen(self, request: web.Request) -> web.StreamResponse:
        """/v1/listen: checks before the upgrade (answered as Deepgram does, in HTTP), then the connection."""
        request_id = str(uuid.uuid4())
        token, as_protocol = offered_token(request)
        if token is None and SESSION_COOKIE in request.cookies:
            token = self.access.session_token(request.cookies[SESSION_COOKIE], time.time())
        else:
            token = self.access.client_token(token) if token is not None else None
        if not self.access.open and token is None:
            return refused(401, "credential", "INVALID_AUTH", "send `Authorization: Token <key>` with a token "
                           "of CALLSTT_WEB_TOKENS_FILE", request_id)
        try:
            listen_request = parse_listen({name: request.query.getall(name) for name in request.query},
                                          new_call_id=request_id)
        except BadRequest as bad:
            return refused(400, "parameters", bad.code, str(bad), request_id)
        if not self.access.may_use_call(token, listen_request.call_id):
            return refused(403, "call_not_allowed", "INSUFFICIENT_PERMISSIONS",
                           f"this token may not use call {listen_request.call_id}", request_id)
        await self.take_over(listen_request)
        try:
            marks = [await self.start_point(listen_request, stream_id) for stream_id in listen_request.stream_ids]
        except BadRequest as bad:
            return refused(409, "stream_over", bad.code, str(bad), request_id)
        except (KafkaError, TimeoutError, OSError) as error:
            return refused(503, "broker", "SERVICE_UNAVAILABLE", f"the broker did not answer: {error}", request_id)
        ws = web.WebSocketResponse(protocols=("token", "bearer") if as_protocol else (), max_msg_size=4 * 1024 * 1024,
                                   heartbeat=20.0)
        ws.headers["dg-request-id"] = request_id
        await ws.prepare(request)
        connection = Connection(self, ws, listen_request, marks, request_id)
        self.connections.add(connection)
        keys = [(listen_request.call_id, stream_id) for stream_id in listen_request.stream_ids]
        self.open_streams.update(dict.fromkeys(keys, connection))
        CONNECTIONS.inc()
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            for key in keys:
                if self.open_streams.get(key) is connection:
                    del self.open_streams[key]
            connection.finished.set()
            CONNECTIONS.dec()
        return ws

    async def take_over(self, listen_request: ListenRequest) -> None:
        """A reconnection while the stream's old connection is still open here (its client's
        socket died and nothing told this side yet): the old one is closed and finishes (its last
        acknowledgements, its marks) before the new one reads where the stream stands."""
        for stream_id in listen_request.stream_ids:
            old = self.open_streams.get((listen_request.call_id, stream_id))
            if old is not None:
                log.info("call=%s stream=%s: a new connection takes the stream over", listen_request.call_id,
                         stream_id)
                old.close_code, old.close_reason = 4000, "another connection took this stream over"
                await old.ws.close(code=4000, message=old.close_reason.encode())
                await old.finished.wait()

    async def start_point(self, listen_request: ListenRequest, stream_id: str) -> StreamMark:
        """Where a stream goes on from (its mark, caught up), or a new stream's first mark."""
        call_id = listen_request.call_id
        mark = await self.kafka.resume_point(call_id, stream_id)
        if mark is not None and mark.ended:
            raise BadRequest(f"stream {stream_id} of call {call_id} has ended (CloseStream); use another stream_id",
                             "STREAM_ENDED")
        if mark is not None and time.time() * 1000 - mark.updated_ms > self.settings.stream_ttl_s * 1000:
            raise BadRequest(f"stream {stream_id} of call {call_id} was idle past CALLSTT_STREAM_TTL_S and the "
                             "workers forgot it; use another stream_id", "STREAM_EXPIRED")
        if mark is not None:
            RESUMED.inc()
            return mark
        audio_end, transcript_end = await self.kafka.end_offsets(call_id)
        return StreamMark(call_id=call_id, stream_id=stream_id, sample_rate=listen_request.sample_rate,
                          audio_offset=audio_end - 1, transcript_offset=transcript_end,
                          updated_ms=int(time.time() * 1000))


class Connection:
    """One client's WebSocket: its streams' audio in, its call's results out."""

    def __init__(self, gateway: Gateway, ws: web.WebSocketResponse, request: ListenRequest,
                 marks: list[StreamMark], request_id: str) -> None:
        self.gateway, self.kafka, self.settings = gateway, gateway.kafka, gateway.settings
        self.ws, self.request, self.request_id = ws, request, request_id
        self.legs = [StreamLeg(request, channel, mark) for channel, mark in enumerate(marks)]
        self.by_stream = {leg.stream_id: leg for leg in self.legs}
        self.resumed = {leg.stream_id for leg, mark in zip(self.legs, marks) if mark.next_seq or mark.samples}
        self.cutter = FrameCutter(request)
        self.pacer = Pacer(self.settings.gateway_max_ahead_s)
        self.in_flight: asyncio.Queue = asyncio.Queue(maxsize=MAX_IN_FLIGHT)
        self.inbox: asyncio.Queue[Delivered] = asyncio.Queue()
        self.partition = self.kafka.partition(request.call_id)
        self.last_data = time.monotonic()
        self.created = datetime.now(timezone.utc).isoformat()
        self.close_code, self.close_reason = 1000, ""
        self.ending = False
        self.broker_failed = False  # the broker refused a chunk: nothing more is published
        self.finished = asyncio.Event()

    async def send(self, message: dict) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(message, ensure_ascii=False))
            MESSAGES.labels(message["type"]).inc()

    async def run(self) -> None:
        settings_record = self.request.call_settings(int(time.time() * 1000))
        try:
            if settings_record is not None:
                await self.kafka.publish_call_settings(settings_record)  # before the first chunk
            for leg in self.legs:
                if leg.stream_id not in self.resumed:
                    await self.kafka.write_mark(leg.mark)
            finals_from = min(leg.mark.transcript_offset for leg in self.legs)
            await self.kafka.follower.follow(self.request.call_id, self.partition, self.inbox.put_nowait,
                                             finals_from if self.resumed else None)
        except (KafkaError, RuntimeError, OSError) as error:
            await self.ws.close(code=1011, message=f"the broker did not answer: {error}"[:120].encode())
            CLOSES.labels("1011").inc()
            return
        try:
            if self.request.ack:
                for leg in self.legs:
                    await self.send({"type": "StreamStarted", "call_id": self.request.call_id,
                                     "stream_id": leg.stream_id, "resumed": leg.stream_id in self.resumed,
                                     "next_seq": leg.mark.next_seq, "audio_ms": leg.mark.audio_ms,
                                     "delivered_through": leg.mark.delivered_through})
            tasks = [asyncio.create_task(self.acknowledge()), asyncio.create_task(self.deliver()),
                     asyncio.create_task(self.watch_idle())]
            try:
                await self.read_audio()
                await self.in_flight.put(None)  # the acknowledger ends after the last chunk
                await tasks[0]
                if self.ending:
                    # the socket is still read while the last finals come, for its pings (aiohttp
                    # answers them as it reads): a client would otherwise give up on it
                    tasks.append(asyncio.create_task(self.drain()))
                    await self.wait_for_last_finals()
                    await self.send(protocol.metadata(self.request_id, self.created, self.audio_seconds(),
                                                      len(self.legs)))
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await self.write_marks()
            except KafkaError as error:  # a reconnection resumes from the last mark that was written
                log.warning("call=%s: the streams' last marks were not written: %s", self.request.call_id, error)
        finally:
            await self.kafka.follower.unfollow(self.request.call_id, self.partition, self.inbox.put_nowait)
            if not self.ws.closed:
                await self.ws.close(code=self.close_code, message=self.close_reason.encode()[:120])
            CLOSES.labels(str(self.ws.close_code or self.close_code)).inc()

    def audio_seconds(self) -> float:
        return max((leg.mark.audio_ms for leg in self.legs), default=0) / 1000

    # --- audio in -------------------------------------------------------------------------------

    async def read_audio(self) -> None:
        """Until the client closes, ends the streams (CloseStream, or an empty frame) or fails."""
        async for message in self.ws:
            if message.type == WSMsgType.BINARY:
                if not message.data:
                    await self.end_streams()  # Deepgram's older way to say CloseStream
                    return
                await self.take_frame(message.data)
            elif message.type == WSMsgType.TEXT:
                if await self.take_control(message.data):
                    return
            elif message.type == WSMsgType.ERROR:
                return

    async def drain(self) -> None:
        """After CloseStream: read (and drop) what else comes, until the socket closes."""
        async for _ in self.ws:
            pass

    async def take_frame(self, frame: bytes) -> None:
        if self.broker_failed:
            return
        self.last_data = time.monotonic()
        now_ms = int(time.time() * 1000)
        for leg, payloads in zip(self.legs, self.cutter.cut(frame)):
            for payload in payloads:
                await self.publish(leg, leg.chunk(payload, now_ms))
        self.pacer.add(len(frame) / (self.request.frame_bytes * self.request.sample_rate))
        wait = self.pacer.wait_s()
        if wait > 0:
            await asyncio.sleep(wait)  # the client's socket fills meanwhile: it is slowed

    async def publish(self, leg: StreamLeg, chunk: AudioChunk) -> None:
        try:
            future = await self.kafka.publish(chunk)
        except KafkaError as error:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(error)
        await self.in_flight.put((leg, chunk, future))  # waits while MAX_IN_FLIGHT are unacknowledged

    async def take_control(self, text: str) -> bool:
        """A text message: KeepAlive, CloseStream, Finalize; True when the streams end."""
        try:
            kind = json.loads(text).get("type")
        except (ValueError, AttributeError):
            kind = None
        if kind == "KeepAlive":
            self.last_data = time.monotonic()
        elif kind == "CloseStream":
            await self.end_streams()
            return True
        elif kind == "Finalize":
            pass  # the worker cuts utterances at the end of speech on its own (docs/gateway.md)
        else:
            await self.send(protocol.error(f"a text message the gateway does not know: {text[:200]}", "SchemaError"))
        return False

    async def end_streams(self) -> None:
        """CloseStream: every stream's closing chunk (no audio, end_of_stream), so the worker cuts its
        last utterance and forgets the stream."""
        self.ending = True
        now_ms = int(time.time() * 1000)
        for leg in self.legs:
            await self.publish(leg, leg.chunk(b"", now_ms, end_of_stream=True))

    async def watch_idle(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if time.monotonic() - self.last_data > self.settings.gateway_idle_close_s and not self.ending:
                await self.send(protocol.error("no audio or KeepAlive for "
                                               f"{self.settings.gateway_idle_close_s:g}s", "NET-0001"))
                self.close_code, self.close_reason = 1011, "NET-0001: no audio received"
                await self.ws.close(code=1011, message=b"NET-0001: no audio received")
                return

    async def acknowledge(self) -> None:
        """The broker's acknowledgements in order; a refusal ends the connection (1011): audio the
        client was not told is safe must be sent again, to this gateway or another."""
        last_mark = time.monotonic()
        while (item := await self.in_flight.get()) is not None:
            leg, chunk, future = item
            if self.broker_failed:
                continue  # emptied, so the reader never waits on a full queue
            try:
                metadata = await future
            except KafkaError as error:
                self.broker_failed = True
                self.close_code, self.close_reason = 1011, "the broker did not take the audio: reconnect"
                log.warning("call=%s stream=%s: the broker refused seq %d: %s", chunk.call_id, chunk.stream_id,
                            chunk.seq, error)
                await self.ws.close(code=1011, message=self.close_reason.encode())
                continue
            leg.acknowledged(chunk, metadata.offset)
            AUDIO_SECONDS.inc(chunk.duration_ms / 1000)
            if self.in_flight.empty():
                if self.request.ack:
                    for each in self.legs:
                        await self.send({"type": "Acknowledged", "stream_id": each.stream_id,
                                         "seq": each.mark.next_seq - 1, "audio_ms": each.mark.audio_ms})
                if time.monotonic() - last_mark >= MARK_EVERY_S or chunk.end_of_stream:
                    await self.write_marks()
                    last_mark = time.monotonic()

    async def write_marks(self) -> None:
        for leg in self.legs:
            await self.kafka.write_mark(leg.mark)

    # --- results out ----------------------------------------------------------------------------

    async def deliver(self) -> None:
        while True:
            delivered = await self.inbox.get()
            await self.deliver_one(delivered)

    async def deliver_one(self, delivered: Delivered) -> None:
        record = delivered.record
        source_stream = record.stream_id.split(">")[0] if delivered.kind == "speech" else record.stream_id
        leg = self.by_stream.get(source_stream)
        if leg is None:
            return  # another stream of the call (another connection's)
        if delivered.kind in ("final", "interim"):
            leg.received(record)
        if delivered.kind == "final" and leg.wants_final(record):
            await self.send(protocol.results(record, leg.channel, leg.channels, self.request_id))
            if self.request.utterance_end_ms is not None:
                await self.send(protocol.utterance_end(record, leg.channel, leg.channels))
            leg.sent_final(record, delivered.offset)
            await self.kafka.write_mark(leg.mark)  # a final sent is never sent again by another gateway
        elif delivered.kind == "interim":
            if leg.wants_interim(record):
                await self.send(protocol.results(record, leg.channel, leg.channels, self.request_id))
                leg.sent_interim(record)
        elif delivered.kind == "translation" and self.request.translate_to is not None:
            key = (record.utterance_index, record.target_language)
            if record.target_language in self.request.translate_to:
                leg.received_translation(record)
            if key not in leg.sent_translations and record.target_language in self.request.translate_to:
                leg.sent_translations.add(key)
                await self.send(protocol.translation_message(record, leg.channel, leg.channels))
        elif delivered.kind == "speech" and self.request.speech:
            language = record.stream_id.split(">", 1)[1] if ">" in record.stream_id else ""
            _, _, utterance_index = spoken_utterance(record)
            leg.received_speech(utterance_index, time.monotonic())
            await self.send(protocol.speech_message(record.call_id, leg.stream_id, language, utterance_index,
                                                    record.seq, base64.b64encode(record.payload).decode(),
                                                    leg.channel, leg.channels))

    async def wait_for_last_finals(self) -> None:
        """After CloseStream: until no stream awaits a final (StreamLeg.awaits_a_final), nor the
        translations and speech asked for after them (awaits_downstream). Given up when no record
        of any followed call came for CALLSTT_GATEWAY_CLOSE_WAIT_S (a loud noise the worker found
        no speech in, no translator running), or after ten times that (workers far behind)."""
        follower, quiet_s = self.kafka.follower, self.settings.gateway_close_wait_s
        started = time.monotonic()
        while not self.ws.closed and any(leg.awaits_a_final() or leg.awaits_downstream(time.monotonic())
                                         for leg in self.legs):
            now = time.monotonic()
            if now - max(started, follower.last_transcript_at) > quiet_s or now - started > 10 * quiet_s:
                log.info("call=%s: closing without the last finals the audio suggested (none came for %.0f s)",
                         self.request.call_id, now - max(started, follower.last_transcript_at))
                return
            await asyncio.sleep(0.05)


def run_gateway(settings: Settings) -> None:
    """`callstt gateway`: the project's topics it uses made where missing, then the server until
    SIGTERM or SIGINT (open connections are told 1012: reconnect, to another gateway)."""
    from callstt.streams.client.acls import topics_used
    from callstt.streams.client.topics import prepare_topics
    from callstt.streams.lifecycle import check_port_free
    from callstt.streams.web_auth import web_access

    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    check_port_free(settings.gateway_host, settings.gateway_port, "the gateway port", "choose another with --port")
    if settings.metrics_port:
        check_port_free(settings.gateway_host, settings.metrics_port, "the metrics port",
                        "choose another with CALLSTT_METRICS_PORT")
    access = web_access(replace(settings, web_host=settings.gateway_host))
    created = prepare_topics(settings, topics_used(settings, "gateway"), [], [])
    if created:
        log.info("created topics: %s", ", ".join(created))
    asyncio.run(serve(Gateway(settings, access)))


async def serve(gateway: Gateway) -> None:
    """The gateway's site, and with CALLSTT_METRICS_PORT a second one with /metrics alone (the
    port a network policy lets Prometheus reach), until a stop signal."""
    settings = gateway.settings
    runners = [web.AppRunner(gateway.web_app(), access_log=None, shutdown_timeout=10.0)]
    if settings.metrics_port:
        metrics_only = web.Application()
        metrics_only.router.add_get("/metrics", gateway.metrics)
        runners.append(web.AppRunner(metrics_only, access_log=None))
    stop = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signal_number, stop.set)
    for runner, port in zip(runners, (settings.gateway_port, settings.metrics_port)):
        await runner.setup()
        await web.TCPSite(runner, settings.gateway_host, port).start()
    log.info("gateway on ws://%s:%d/v1/listen (listening page: http://%s:%d/listen); clients need a token of %s",
             settings.gateway_host, settings.gateway_port, settings.gateway_host, settings.gateway_port,
             gateway.access.source)
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
