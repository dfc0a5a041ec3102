"""The component socket: `DIR/NAME.sock`, where daprd finds our bindings through gRPC reflection."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection

from ..engine import Engine, LifecycleDispatcher, server_options
from ..protos import dapr_components_pb2 as cpb
from ..protos import dapr_components_pb2_grpc as cgrpc
from ..protos import dapr_components_workflow_pb2 as wpb
from ..protos import dapr_components_workflow_pb2_grpc as wgrpc
from .bindings import InputBinding, OutputBinding, OutputSettings
from .socket_folder import (
    DEFAULT_SOCKET_MODE,
    PlacedSocket,
    check_folder,
    place_socket,
)
from .socket_folder import socket_in_use as socket_in_use  # the test harness's probe
from .workflow_service import WorkflowService

log = logging.getLogger("dapr_workflows.pluggable")

DEFAULT_SOCKET_FOLDER = "/tmp/dapr-components-sockets"
# daprd reads the first; the Kubernetes sidecar injector sets the second in the component's container.
SOCKET_FOLDER_VARIABLES = ("DAPR_COMPONENTS_SOCKETS_FOLDER", "DAPR_COMPONENT_SOCKETS_FOLDER")


def default_socket_folder() -> str:
    for variable in SOCKET_FOLDER_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    return DEFAULT_SOCKET_FOLDER


class ComponentServer:
    def __init__(
        self,
        engine: Engine,
        folder: str,
        name: str,
        socket_mode: int = DEFAULT_SOCKET_MODE,
        allow_foreign_folder: bool = False,
    ) -> None:
        self.engine = engine
        self.path = Path(folder) / f"{name}.sock"
        self.name = name
        self.socket_mode = socket_mode
        self.allow_foreign_folder = allow_foreign_folder
        self._placed: PlacedSocket | None = None
        self.dispatcher = LifecycleDispatcher(engine)
        self.output_settings: dict[str, OutputSettings] = {}
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_folder(self.path.parent, self.allow_foreign_folder)
        settings = self.engine.settings
        options = server_options(settings.max_payload_bytes, settings.keepalive_seconds)
        server = grpc.aio.server(options=options)
        cgrpc.add_OutputBindingServicer_to_server(OutputBinding(self.engine, self.output_settings), server)
        cgrpc.add_InputBindingServicer_to_server(InputBinding(self.dispatcher, self.output_settings), server)
        # The proposed Workflow service: a daprd without it (all so far) ignores it.
        wgrpc.add_WorkflowServicer_to_server(WorkflowService(self.engine, {}), server)
        services = [
            cpb.DESCRIPTOR.services_by_name["OutputBinding"].full_name,
            cpb.DESCRIPTOR.services_by_name["InputBinding"].full_name,
            wpb.DESCRIPTOR.services_by_name["Workflow"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(services, server)
        self._placed = place_socket(
            self.path.parent, self.path.name, self.socket_mode, lambda path: _bind(server, path)
        )
        await server.start()
        self._server = server
        self.dispatcher.start()
        log.info(
            "listening on %s: Dapr pluggable component, type bindings.%s (output: workflow management; "
            "input: lifecycle events). daprd discovers it only at its start-up",
            self.path,
            self.name,
        )

    async def stop(self, grace: float) -> None:
        await self.dispatcher.stop()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._placed is not None:
            self._placed.remove()
            self._placed = None


def _bind(server: grpc.aio.Server, path: str) -> None:
    server.add_insecure_port(f"unix://{path}")
