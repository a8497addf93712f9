"""Hybrid AI Stack gateway. `create_app()` builds the Flask app; nothing happens at import."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask

from .config import Settings

__all__ = ["create_app"]


def create_app(config: Settings | Mapping[str, str] | None = None) -> Flask:
    """Build the app: settings (from the environment unless given) -> services -> blueprints.

    `config` may be a Settings, a mapping read like the environment (tests), or None (os.environ).
    """
    from .api import anthropic, batches, embeddings, feedback, native, openai, ops, responses
    from .api.client_address import ClientAddress
    from .api.errors import register_error_handlers
    from .api.hooks import register_hooks
    from .fastjson import FastJSONProvider
    from .logs import configure_logging
    from .service import GatewayService

    settings = config if isinstance(config, Settings) else Settings.from_env(config)
    configure_logging(settings.log_level)
    log = logging.getLogger("gateway")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = FastJSONProvider(app)
    app.extensions["gateway"] = svc = GatewayService(settings)
    _batches(app, svc)
    svc.calibrator.start()  # where something learns: the version in force, refits (gateway/calibration/)

    register_hooks(app)
    register_error_handlers(app)
    app.register_blueprint(native.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(openai.bp)
    app.register_blueprint(anthropic.bp)
    app.register_blueprint(responses.bp)
    app.register_blueprint(embeddings.openai_bp)
    app.register_blueprint(embeddings.native_bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(ops.bp)
    if settings.trusted_proxies:
        app.wsgi_app = ClientAddress(app.wsgi_app, settings.trusted_proxies)

    if not (settings.api_keys or settings.admin_keys):
        log.warning("GATEWAY_API_KEYS is empty: /api and /v1 are open to anyone who can reach this port")
    elif not settings.admin_keys:
        log.info("GATEWAY_ADMIN_KEYS is empty: each key sees only its own budget, stats and decisions")
    if "anthropic" not in settings.configured_backends:
        log.warning("ANTHROPIC_API_KEY is not set: requests stay on local models")
    return app


def _batches(app: Flask, svc) -> None:
    """Batch files and state under BATCH_DIR (records in Redis when the gateway has it), run in the
    background of every worker; off without BATCH_DIR."""
    from pathlib import Path

    from .batch_runner import BatchRunner
    from .state.batches import BatchStore, DiskRecords, RedisRecords

    app.extensions["batches"] = None
    if not svc.settings.batch_dir:
        return
    root = Path(svc.settings.batch_dir)
    records = RedisRecords(svc.state.redis) if svc.state.redis is not None else DiskRecords(root)
    store = app.extensions["batches"] = BatchStore(root, records)
    runner = app.extensions["batch_runner"] = BatchRunner(app, svc, store)
    svc.closers.append(runner.close)
    runner.start()  # takes over batches a stopped worker left unfinished
