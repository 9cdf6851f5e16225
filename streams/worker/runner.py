"""Starting a worker: topics, models, then the Faust app (what `callstt worker` runs)."""

from __future__ import annotations

import logging
from pathlib import Path

from models.asr.faster_whisper_backend import DecodeOptions, FasterWhisperBackend
from models.asr.routing import ModelRouter
from models.asr.store import choose_checkpoint, resolve_model
from streams.settings import Settings

log = logging.getLogger("callstt.worker")

DEFAULT_PHOWHISPER_MODEL = "vinai/PhoWhisper-small"


def build_router(settings: Settings) -> ModelRouter:
    """Load the multilingual model and the routes the settings ask for.

    The Vietnamese route (USE_PHOWHISPER): CALLSTT_PHOWHISPER_MODEL (a local checkpoint directory, a
    CTranslate2 directory or a hub id; default vinai/PhoWhisper-small) runs as CALLSTT_PHOWHISPER_BACKEND
    says (models.asr.store.choose_checkpoint). A route that cannot load is logged, explained in
    router.notes["vi"] (shown on /models), and Vietnamese falls back to the multilingual model.
    """
    directory = resolve_model(settings.model, settings.model_cache_path, settings.allow_hub_download)
    options = DecodeOptions(beam_size=settings.beam_size, fast_language_detection=settings.fast_language_detection)
    multilingual = FasterWhisperBackend(directory, settings.model, settings.device, settings.compute_type,
                                        settings.cpu_threads, options, settings.model_lanes)
    router = ModelRouter(multilingual=multilingual)
    if not settings.use_phowhisper:
        return router
    reference = settings.phowhisper_model or DEFAULT_PHOWHISPER_MODEL
    # Transcripts name the model: the hub id, or a local directory's name (never a machine's path).
    name = reference if not Path(reference).expanduser().exists() else Path(reference).expanduser().resolve().name
    try:
        choice = choose_checkpoint(reference, settings.phowhisper_backend, settings.phowhisper_quantization,
                                   settings.model_cache_path, settings.allow_hub_download)
        if choice.convert_from is not None:
            log.info("converting PhoWhisper %s to CTranslate2 (%s), once, into %s", reference,
                     settings.phowhisper_quantization, choice.path)
            from models.asr.convert import convert_checkpoint

            convert_checkpoint(choice.convert_from, choice.path, settings.phowhisper_quantization, source=reference)
        if choice.kind == "ctranslate2":
            route = FasterWhisperBackend(choice.path, name, settings.device, settings.compute_type,
                                         settings.cpu_threads, options, settings.model_lanes)
        else:
            from models.asr.transformers_backend import TransformersBackend

            route = TransformersBackend(choice.path, name, settings.device, settings.torch_dtype,
                                        settings.cpu_threads, options)
    except Exception as error:  # ModelFileError, ImportError, torch/ctranslate2 errors: fall back, never die
        router.notes["vi"] = (f"PhoWhisper route ({reference}, backend {settings.phowhisper_backend}) could not "
                              f"load: {error}; Vietnamese uses the multilingual model {settings.model}")
        log.warning(router.notes["vi"])
        return router
    router.routes["vi"] = route
    log.info("Vietnamese route: %s through %s", name, route.backend_name)
    return router


def run_worker(settings: Settings) -> None:
    import faust

    from streams.lifecycle import check_local_resources, prepare_app_topics
    from streams.worker.app import create_app

    check_local_resources(settings.data_dir, settings.web_host, settings.web_port, settings.metrics_port)
    app = create_app(settings, lambda: build_router(settings))
    created = prepare_app_topics(settings, app, "worker")  # before Faust starts (streams/lifecycle.py)
    if created:
        log.info("created topics: %s", ", ".join(created))
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), redirect_stdouts=False)
    log.info("worker web pages on http://%s:%d/ (health: /health, models: /models, metrics: /metrics)",
             settings.web_host, settings.web_port)
    worker.execute_from_commandline()
