"""Protocol-faithful fake upstreams on loopback (see ../shared/reference/PROTOCOLS.md)."""

from .anthropic import FakeAnthropic
from .ollama import FakeOllama
from .openai import FakeOpenAI
from .server import Script

__all__ = ["FakeAnthropic", "FakeOllama", "FakeOpenAI", "Script"]
