"""The engine's public API: what adapters (gRPC, binding, HTTP, triggers, CLI) may import."""

from .engine import Engine
from .outbox import Delivery, LifecycleDispatcher, LifecycleStream
from .settings import EngineSettings

__all__ = ["Delivery", "Engine", "EngineSettings", "LifecycleDispatcher", "LifecycleStream"]
