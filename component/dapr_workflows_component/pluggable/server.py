"""The component socket: `DIR/NAME.sock`, where daprd finds our bindings through gRPC reflection."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection

from ..engine import Engine, LifecycleDispatcher, server_options
from ..protos import dapr_components_pb2 as cpb
from ..protos import dapr_components_pb2_grpc as cgrpc
from ..protos import dapr_components_workflow_pb2 as wpb
from ..protos import dapr_components_workflow_pb2_grpc as wgrpc
from .bindings import InputBinding, OutputBinding, OutputSettings
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


def socket_in_use(path: Path) -> bool:
    """Whether a process accepts connections on the Unix socket `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


class ComponentServer:
    def __init__(self, engine: Engine, folder: str, name: str) -> None:
        self.engine = engine
        self.path = Path(folder) / f"{name}.sock"
        self.name = name
        self.dispatcher = LifecycleDispatcher(engine)
        self.output_settings: dict[str, OutputSettings] = {}
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if socket_in_use(self.path):
                raise RuntimeError(
                    f"another process is serving the component socket {self.path}; stop it or choose "
                    "another --socket-name"
                )
            log.info("replacing the stale socket file %s", self.path)
            self.path.unlink()
        server = grpc.aio.server(options=server_options(self.engine.settings.max_payload_bytes))
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
        server.add_insecure_port(f"unix://{self.path}")
        await server.start()
        # daprd may run as another user in another container that shares the socket volume.
        os.chmod(self.path, 0o777)
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
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
