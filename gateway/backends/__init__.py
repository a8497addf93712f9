"""Upstream backends, one small class each. Adding a provider is one file and one line here."""

from __future__ import annotations

from ..config import Settings
from .anthropic import AnthropicBackend
from .base import Backend, BackendError, BackendHealth, ModelState
from .ollama import OllamaBackend
from .openai_compat import OpenAICompatBackend

__all__ = ["Backend", "BackendError", "BackendHealth", "ModelState", "build_backends"]


def build_backends(settings: Settings) -> dict[str, Backend]:
    """One client per configured backend, keyed by the backend name used everywhere (`backend` field)."""
    configured = settings.configured_backends
    backends: dict[str, Backend] = {}
    if "ollama" in configured:
        backends["ollama"] = OllamaBackend(settings.ollama, keep_alive=settings.ollama_keep_alive,
                                           urls=settings.ollama_urls,
                                           breaker=(settings.breaker_failure_threshold,
                                                    settings.breaker_cooldown_seconds),
                                           health_max_age=settings.health_cache_seconds,
                                           host_policy=settings.ollama_host_policy)
    if "anthropic" in configured:
        backends["anthropic"] = AnthropicBackend(settings.anthropic)
    if "openai_compat" in configured:
        backends["openai_compat"] = OpenAICompatBackend(settings.openai_compat)
    return backends
