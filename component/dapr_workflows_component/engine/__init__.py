"""The engine's public API: what adapters (gRPC, binding, HTTP, triggers, CLI) may import."""

from .bulk import bulk_purge, bulk_terminate, counts, list_page
from .engine import Engine, WorkFilters, metadata_app_id
from .entity_service import EntityInfo
from .grpc_server import server_options  # after Engine, which it imports
from .outbox import Delivery, LifecycleDispatcher, LifecycleStream
from .rewind import rewound_details
from .settings import EngineSettings

__all__ = [
    "Delivery",
    "Engine",
    "EngineSettings",
    "EntityInfo",
    "LifecycleDispatcher",
    "LifecycleStream",
    "WorkFilters",
    "bulk_purge",
    "bulk_terminate",
    "counts",
    "list_page",
    "metadata_app_id",
    "rewound_details",
    "server_options",
]
