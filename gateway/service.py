"""The path every surface shares below parsing: route, execute, record.

api/native.py and api/openai.py turn HTTP into a ChatRequest and render the Outcome (or frame the
stream); everything in between happens here, once.
"""

from __future__ import annotations

from .backends import build_backends
from .chat import ChatRequest, Outcome
from .config import Settings
from .dispatch import Dispatcher, LiveStream
from .smart_router import Decision, RoutingContext, decide
from .state.stats import InMemoryStats, StatsStore
from .upstreams import Upstreams


class GatewayService:
    def __init__(self, settings: Settings, upstreams: Upstreams | None = None, stats: StatsStore | None = None):
        self.settings = settings
        self.upstreams = upstreams or Upstreams(settings, build_backends(settings))
        self.dispatcher = Dispatcher(settings, self.upstreams)
        self.stats = stats or InMemoryStats()

    def context(self) -> RoutingContext:
        """What the router may know right now; read from memory, no I/O."""
        return RoutingContext(
            catalog=self.settings.catalog,
            configured_backends=frozenset(self.upstreams.backends),
            deployment_tier=self.settings.deployment_tier,
            default_strategy=self.settings.routing_strategy,
            open_circuits=self.upstreams.open_circuits(),
            missing_models=self.upstreams.missing_models(),
        )

    def decide(self, request: ChatRequest) -> Decision:
        return decide(request, self.context())

    def complete(self, request: ChatRequest, decision: Decision) -> Outcome:
        outcome = self.dispatcher.execute(request, decision)
        self.record(outcome)
        return outcome

    def open_stream(self, request: ChatRequest, decision: Decision) -> LiveStream:
        """Fails (GatewayError) before the first token like complete(); the caller records the end."""
        return self.dispatcher.open_stream(request, decision)

    def record(self, outcome: Outcome) -> None:
        model = self.settings.catalog.model(outcome.model)
        self.stats.record(outcome, local=model is not None and not model.paid)

    def record_error(self, kind: str) -> None:
        self.stats.record_error(kind)

    def close(self) -> None:
        self.upstreams.close()
