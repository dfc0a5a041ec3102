"""The engine's public API: what adapters (gRPC, binding, HTTP, triggers, CLI) may import."""

from .core import Engine, EngineSettings

__all__ = ["Engine", "EngineSettings"]
