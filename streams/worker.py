"""Starting a worker: topics, models, then the Faust app (what `callstt worker` runs)."""

from __future__ import annotations

import logging

from models.faster_whisper_backend import DecodeOptions, FasterWhisperBackend
from models.routing import ModelRouter
from models.store import resolve_model
from streams.settings import Settings

log = logging.getLogger("callstt.worker")


def build_router(settings: Settings) -> ModelRouter:
    """Load the multilingual model and the routes the settings ask for."""
    directory = resolve_model(settings.model, settings.model_cache_path, settings.allow_hub_download)
    multilingual = FasterWhisperBackend(directory, settings.model, settings.device, settings.compute_type,
                                        settings.cpu_threads, DecodeOptions(beam_size=settings.beam_size))
    router = ModelRouter(multilingual=multilingual)
    if settings.use_phowhisper:
        router.notes["vi"] = ("PhoWhisper route requested but not available in this version; "
                              "Vietnamese uses the multilingual model")
        log.warning(router.notes["vi"])
    return router


def run_worker(settings: Settings) -> None:
    import faust

    from streams.app import create_app
    from streams.topics import ensure_topics

    created = ensure_topics(settings)
    if created:
        log.info("created topics: %s", ", ".join(created))
    app = create_app(settings, lambda: build_router(settings))
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), redirect_stdouts=False)
    log.info("worker web pages on http://%s:%d/ (health: /health, models: /models, metrics: /metrics)",
             settings.web_host, settings.web_port)
    worker.execute_from_commandline()
