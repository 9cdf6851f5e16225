"""The worker's own web pages, served by Faust's web server beside its built-in ones.

/api (service, version, endpoints; Faust's statistics view keeps `/`), /health, /models,
/metrics, /calls (JSON), /calls/live (an HTML page for people: transcripts with their
translations and a player for their synthesized speech), /calls/speech (that speech, WAV) and
POST /transcribe
(the old HTTP service's endpoint, see streams/worker/http_transcribe.py). The pages with call
content need a token: streams/web_auth.py, in front of them all.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlencode

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.audio.endpointing import EndpointState
from callstt.schemas.records import Transcript, Translation
from callstt.streams.core.assembly import state_key
from callstt.streams.core.stages import StageLog
from callstt.streams.settings import Settings
from callstt.streams.worker import metrics
from callstt.streams.worker.downstream_view import ClipKey, SpeechClips
from callstt.streams.worker.http_transcribe import TranscribeView

LIVE_PAGE = Path(__file__).with_name("live.html")


def package_version() -> str:
    try:
        return version("callstt")
    except PackageNotFoundError:
        return "unknown"


def latency_seconds(transcript: Transcript) -> float | None:
    """From the capture of a transcript's last audio to its production, where that means something:
    None without a capture time, or when the audio's capture time is ahead of the worker's clock
    (a call published faster than real time, or a platform clock that disagrees)."""
    if not transcript.last_audio_capture_ts_ms:
        return None
    seconds = (transcript.produced_ts_ms - transcript.last_audio_capture_ts_ms) / 1000
    return round(seconds, 3) if seconds >= 0 else None


class WorkerStatus:
    """What the worker knows about itself, for its web pages; updated by the agent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.router = None
        self.model_error = ""
        self.models_ready = asyncio.Event()
        self.started_at = time.time()
        self.streams: dict[str, dict] = {}  # state key -> what /calls shows
        # Streams that ended, kept in the table a while (streams/core/assembly.py StreamState.ended):
        # state key -> what the idle timer needs to forget them in time. Not active, not shown.
        self.ended_streams: dict[str, dict] = {}
        self._buffered_seconds = 0.0  # over all streams
        self.recent_transcripts: deque[dict] = deque(maxlen=200)
        # The same entries by (call, stream, utterance index): where translations and speech land.
        self.recent_by_utterance: dict[tuple[str, str, int], dict] = {}
        self.speech = SpeechClips()  # the translated legs' recent speech (streams/worker/downstream_view.py)
        self.assigned_partitions: Callable[[], set[int]] = set
        self.lag_records: Callable[[], int] = lambda: 0  # audio records assigned to us, not done yet
        self.broker = None  # streams/worker/broker_probe.py BrokerProbe: whether the broker answers
        self.watch = None  # streams/core/retry.py FailureWatch: whether the worker is stalled
        self.stages = StageLog()  # the pipeline's (streams/core/stages.py): what held each recent final

    def on_stream(self, key: str, state) -> None:
        if state.ended:
            self.forget_stream(key)
            self.ended_streams[key] = {"call_id": state.call_id, "stream_id": state.stream_id,
                                       "partition": state.partition, "last_chunk_ms": state.last_received_ms,
                                       "utterance_open": False}
            return
        previous = self.streams.get(key, {})
        view = {
            "call_id": state.call_id, "stream_id": state.stream_id, "partition": state.partition,
            "language": state.language_label or None, "utterances": state.utterance_index,
            "buffered_seconds": round(sum(block.samples for block in state.blocks) / SAMPLE_RATE, 2),
            "last_chunk_ms": state.last_received_ms, "last_transcript": previous.get("last_transcript"),
            "interim": previous.get("interim"),  # the open utterance's latest interim, None once its final is out
            # For the idle timer, which then reads the table only for the streams it acts on.
            "utterance_open": EndpointState.from_bytes(state.endpoint).is_open,
        }
        self._buffered_seconds += view["buffered_seconds"] - previous.get("buffered_seconds", 0.0)
        self.streams[key] = view
        self._update_gauges()

    def forget_stream(self, key: str) -> None:
        self.ended_streams.pop(key, None)
        view = self.streams.pop(key, None)
        if view is not None:
            self._buffered_seconds -= view["buffered_seconds"]
        self._update_gauges()

    def on_transcript(self, transcript: Transcript) -> None:
        entry = {"call_id": transcript.call_id, "stream_id": transcript.stream_id,
                 "utterance_index": transcript.utterance_index, "language": transcript.language,
                 "text": transcript.text, "produced_ts_ms": transcript.produced_ts_ms,
                 "latency_seconds": latency_seconds(transcript),
                 "translations": {}, "speech": {}}  # by target language, as they come back
        if len(self.recent_transcripts) == self.recent_transcripts.maxlen:
            oldest = self.recent_transcripts[0]
            self.recent_by_utterance.pop((oldest["call_id"], oldest["stream_id"], oldest["utterance_index"]), None)
        self.recent_transcripts.append(entry)
        self.recent_by_utterance[(transcript.call_id, transcript.stream_id, transcript.utterance_index)] = entry
        view = self.streams.get(state_key(transcript.call_id, transcript.stream_id))
        if view is not None:
            view["last_transcript"] = transcript.text
            if view.get("interim") and view["interim"]["utterance_index"] <= transcript.utterance_index:
                view["interim"] = None  # the final replaces its interims

    def on_interim(self, transcript: Transcript) -> None:
        """An interim of a stream's open utterance: what the live page shows until its final."""
        view = self.streams.get(state_key(transcript.call_id, transcript.stream_id))
        shown = view.get("interim") if view else None
        if view is None or (shown and (shown["utterance_index"], shown["revision"]) >=
                            (transcript.utterance_index, transcript.revision)):
            return
        view["interim"] = {"utterance_index": transcript.utterance_index, "revision": transcript.revision,
                           "text": transcript.text, "stable_text": transcript.stable_text,
                           "latency_seconds": latency_seconds(transcript)}

    def on_translation(self, translation: Translation) -> None:
        """A recent transcript's translation (its text, or its status when there is none)."""
        entry = self.recent_by_utterance.get((translation.call_id, translation.stream_id, translation.utterance_index))
        if entry is not None:
            entry["translations"][translation.target_language] = {"text": translation.text,
                                                                  "status": translation.status.value.lower()}

    def on_speech(self, clip: ClipKey, seconds: float) -> None:
        """A recent transcript's synthesized speech so far: its length and where the page plays it."""
        call_id, leg, index = clip
        stream_id, _, language = leg.partition(">")
        entry = self.recent_by_utterance.get((call_id, stream_id, index))
        if entry is not None:
            query = urlencode({"call": call_id, "leg": leg, "utterance": index})
            entry["speech"][language] = {"seconds": seconds, "url": f"/calls/speech?{query}"}

    def _update_gauges(self) -> None:  # a running total: a sum over every stream per chunk is too slow
        metrics.ACTIVE_STREAMS.set(len(self.streams))
        metrics.BUFFERED_SECONDS.set(max(round(self._buffered_seconds, 2), 0.0))

    def health(self) -> tuple[int, dict]:
        body = {"service": "callstt", "app": self.settings.app_id,
                "uptime_seconds": round(time.time() - self.started_at, 1),
                "partitions": sorted(self.assigned_partitions()), "active_streams": len(self.streams)}
        if self.model_error:
            return 503, {**body, "status": "error", "reason": f"models failed to load: {self.model_error}"}
        stall = self.watch.stalled() if self.watch is not None else None
        if stall is not None:
            return 503, {**body, "status": "stalled", "reason": stall.reason,
                         "stalled_seconds": round(self.watch.stalled_for_s(), 1),
                         "exit_in_seconds": round(max(self.watch.exit_after_s - self.watch.stalled_for_s(), 0), 1)}
        if not self.models_ready.is_set():
            return 503, {**body, "status": "starting", "reason": "models loading"}
        if not body["partitions"]:
            return 503, {**body, "status": "starting", "reason": "no partitions of the audio topic assigned yet"}
        if self.broker is not None and not self.broker.reachable:
            # Still 200, as overloaded: a restart would not bring the network back.
            return 200, {**body, "status": "broker_unreachable",
                         "reason": f"no answer from the broker for {self.broker.reply_age_s():.0f} s: transcripts "
                                   "wait, the records stay in Kafka, nothing is lost"}
        lag = self.lag_records()
        body["lag_records"] = lag
        if lag > self.settings.overload_lag_records:
            # Still 200: the worker is healthy, only behind; restarting it would make things worse.
            return 200, {**body, "status": "overloaded",
                         "reason": f"behind by {lag} audio records: transcripts are delayed, nothing is lost"}
        return 200, {**body, "status": "ok"}

    def calls(self) -> dict:
        return {"streams": sorted(self.streams.values(), key=lambda v: (v["call_id"], v["stream_id"])),
                "recent_transcripts": list(self.recent_transcripts)[-50:]}


def register_pages(app, status: WorkerStatus) -> None:
    debug_pages = ["/router/", "/table/"] if status.settings.web_debug_pages else []

    @app.page("/api")
    async def api_root(web, request):
        return web.json({"service": "callstt", "version": package_version(),
                         "description": "Speech-to-text stream processor for live calls",
                         "endpoints": ["/api", "/health", "/models", "/metrics", "/calls", "/calls/live",
                                       "/calls/speech", "/stages", "POST /transcribe", *debug_pages],
                         "need_token": ["/calls", "/calls/live", "/calls/speech", "/stages", "POST /transcribe",
                                        *debug_pages]})

    @app.page("/health")
    async def health(web, request):
        code, body = status.health()
        return web.json(body, status=code)

    @app.page("/models")
    async def models_page(web, request):
        if status.router is None:
            return web.json({"status": "loading", "reason": status.model_error or "models loading"}, status=503)
        return web.json(status.router.describe())

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(metrics.render(), content_type="text/plain")

    @app.page("/calls")
    async def calls_page(web, request):
        return web.json(status.calls())

    @app.page("/stages")
    async def stages_page(web, request):
        """When each step of the recent finals happened, and the model calls (streams/core/stages.py);
        ?call=C (repeatable) keeps those calls' finals."""
        calls = set(request.query.getall("call", [])) or None
        return web.json(status.stages.page(calls))

    @app.page("/calls/live")
    async def live_page(web, request):
        return web.html(LIVE_PAGE.read_text())

    @app.page("/calls/speech")
    async def speech_page(web, request):
        """A recent utterance's synthesized speech as WAV: ?call=C&leg=caller>pt&utterance=N."""
        query = request.query
        try:
            clip = (query["call"], query["leg"], int(query["utterance"]))
        except (KeyError, ValueError):
            return web.json({"error": "give call, leg and utterance (an integer)"}, status=400)
        wav = status.speech.wav(clip)
        if wav is None:
            return web.json({"error": "no speech kept for that utterance (only the most recent are)"}, status=404)
        return web.bytes(wav, content_type="audio/wav")

    app.page("/transcribe")(TranscribeView.for_status(status))
