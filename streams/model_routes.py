"""Which model transcribes which language: the routing table, built from the settings in this one
place for every process that transcribes (the worker, POST /transcribe, `callstt replay`, the bench).

    router = build_router(settings)          # models.asr.routing.ModelRouter
    router.backend_for("vi")                 # the PhoWhisper route when configured, else the multilingual model

The table (`language_routes`): every language goes to the multilingual faster-whisper model
(MODEL_SIZE / CALLSTT_MODEL); with USE_PHOWHISPER, Vietnamese goes to CALLSTT_PHOWHISPER_MODEL (a
local checkpoint directory, a CTranslate2 directory or a hub id; default vinai/PhoWhisper-small),
run as CALLSTT_PHOWHISPER_BACKEND says (models.asr.store.choose_checkpoint: faster-whisper for a
CTranslate2 directory, else the transformers backend or a one-time conversion); CALLSTT_ROUTES
adds rows LANG=BACKEND@MODEL, where BACKEND is one of those, or `module:function`, a loader of a
backend of one's own (`loader(route, settings, options) -> Backend`, models/asr/routing.py's
interface). A route that cannot load is logged, explained in router.notes[language] (shown on
/models), and its language falls back to the multilingual model.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from callstt.models.asr.convert import convert_checkpoint
from callstt.models.asr.faster_whisper_backend import DecodeOptions, FasterWhisperBackend
from callstt.models.asr.routing import Backend, ModelRouter
from callstt.models.asr.store import choose_checkpoint, resolve_model
from callstt.models.asr.transformers_backend import TransformersBackend
from callstt.streams.settings import Settings, SettingsError

log = logging.getLogger("callstt.models")

DEFAULT_PHOWHISPER_MODEL = "vinai/PhoWhisper-small"


@dataclass(frozen=True)
class Route:
    """One row of the routing table: `language` goes to the checkpoint `reference`, run by the
    backend `backend` ("auto", "converted" or "transformers": models.asr.store; or "module:function",
    a loader of one's own)."""

    language: str
    label: str  # how notes and logs name the route ("PhoWhisper")
    reference: str
    backend: str
    quantization: str


def language_routes(settings: Settings) -> list[Route]:
    """The languages that do not go to the multilingual model, and where they go: Vietnamese to
    PhoWhisper (USE_PHOWHISPER), then CALLSTT_ROUTES' rows (LANG=BACKEND@MODEL)."""
    routes = [Route("vi", "PhoWhisper", settings.phowhisper_model or DEFAULT_PHOWHISPER_MODEL,
                    settings.phowhisper_backend, settings.phowhisper_quantization)] if settings.use_phowhisper else []
    for row in filter(None, (part.strip() for part in settings.routes.split(","))):
        language, _, target = (part.strip() for part in row.partition("="))
        backend, _, reference = (part.strip() for part in target.partition("@"))
        if not (language and backend and reference):
            raise SettingsError(f"CALLSTT_ROUTES: {row!r} is not LANG=BACKEND@MODEL (e.g. ja=auto@/models/x)")
        if any(route.language == language.lower() for route in routes):
            raise SettingsError(f"CALLSTT_ROUTES: {language} has a route already")
        routes.append(Route(language.lower(), f"{language} ({backend})", reference, backend,
                            settings.phowhisper_quantization))
    return routes


def build_router(settings: Settings) -> ModelRouter:
    """Load the multilingual model and every route of `language_routes`."""
    if not settings.use_faster_whisper:
        # The seed service could run its multilingual model through transformers; callstt's
        # packing, lanes and packaged models are faster-whisper's, so it says so rather than
        # ignoring the setting.
        raise SettingsError("USE_FASTER_WHISPER=false is not supported: the multilingual model runs on "
                            "faster-whisper (CTranslate2). Unset it; a transformers checkpoint can serve "
                            "Vietnamese (USE_PHOWHISPER=true, CALLSTT_PHOWHISPER_BACKEND=transformers)")
    routes = language_routes(settings)  # a malformed CALLSTT_ROUTES fails the start before any model loads
    options = DecodeOptions(beam_size=settings.beam_size, fast_language_detection=settings.fast_language_detection)
    directory = resolve_model(settings.model, settings.model_cache_path, settings.allow_hub_download)
    router = ModelRouter(multilingual=FasterWhisperBackend(directory, settings.model, settings.device,
                                                           settings.compute_type, settings.cpu_threads, options,
                                                           settings.model_lanes))
    for route in routes:
        try:
            router.routes[route.language] = load_route(route, settings, options)
        except Exception as error:  # ModelFileError, ImportError, torch/ctranslate2 errors: fall back, never die
            router.notes[route.language] = (
                f"{route.label} route ({route.reference}, backend {route.backend}) could not load: {error}; "
                f"{route.language} uses the multilingual model {settings.model}")
            log.warning(router.notes[route.language])
            continue
        log.info("%s route (%s): %s through %s", route.label, route.language,
                 router.routes[route.language].model_name, router.routes[route.language].backend_name)
    return router


def load_route(route: Route, settings: Settings, options: DecodeOptions) -> Backend:
    """The backend that serves one route: a loader of one's own (BACKEND `module:function`, called
    with the route, the settings and the decoding options), else the checkpoint as the model store
    finds it (converting a transformers checkpoint once when asked)."""
    if ":" in route.backend:
        module, _, function = route.backend.partition(":")
        return getattr(importlib.import_module(module), function)(route, settings, options)
    # Transcripts name the model: the hub id, or a local directory's name (never a machine's path).
    local = Path(route.reference).expanduser()
    name = local.resolve().name if local.exists() else route.reference
    choice = choose_checkpoint(route.reference, route.backend, route.quantization, settings.model_cache_path,
                               settings.allow_hub_download)
    if choice.convert_from is not None:
        log.info("converting %s to CTranslate2 (%s), once, into %s", route.reference, route.quantization, choice.path)
        convert_checkpoint(choice.convert_from, choice.path, route.quantization, source=route.reference)
    if choice.kind == "ctranslate2":
        return FasterWhisperBackend(choice.path, name, settings.device, settings.compute_type,
                                    settings.cpu_threads, options, settings.model_lanes)
    return TransformersBackend(choice.path, name, settings.device, settings.torch_dtype, settings.cpu_threads, options)
