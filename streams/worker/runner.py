"""Starting a worker: topics, models, then the Faust app (what `callstt worker` runs)."""

from __future__ import annotations

import logging

import faust

from callstt.streams.lifecycle import check_local_resources, prepare_app_topics
from callstt.streams.model_routes import build_router
from callstt.streams.settings import Settings
from callstt.streams.worker.app import create_app

log = logging.getLogger("callstt.worker")


def run_worker(settings: Settings) -> None:
    check_local_resources(settings.data_dir, settings.web_host, settings.web_port, settings.metrics_port)
    app = create_app(settings, lambda: build_router(settings))
    created = prepare_app_topics(settings, app, "worker")  # before Faust starts (streams/lifecycle.py)
    if created:
        log.info("created topics: %s", ", ".join(created))
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), redirect_stdouts=False)
    log.info("worker web pages on http://%s:%d/ (health: /health, models: /models, metrics: /metrics)",
             settings.web_host, settings.web_port)
    worker.execute_from_commandline()
