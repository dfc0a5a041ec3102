# The dapr-workflows component image: `dapr-workflows serve`, for a pod as an injected Dapr
# pluggable component (deploy/kubernetes/) or on its own.
#
#   docker build -t dapr-workflows:0.1.0 .
#
# In a pod the engine shares the network with the app and daprd, so it keeps listening on
# 127.0.0.1 (the defaults); set DAPR_WORKFLOWS_HTTP_ADDRESS=0.0.0.0:4180 (or the engine address)
# only for what must be reached from outside the pod or container. The state is kept under
# /var/lib/dapr-workflows: mount a volume there (or set DAPR_WORKFLOWS_STORE to a PostgreSQL URL).

# The package and its dependencies in a virtual environment, built where the sources are.
FROM python:3.11-slim AS build
RUN python -m venv /opt/dapr-workflows
WORKDIR /src
COPY pyproject.toml README.md ./
COPY component ./component
COPY sdk_ext ./sdk_ext
RUN /opt/dapr-workflows/bin/pip install --no-cache-dir '.[uvloop]'

# The same base image, so the environment's interpreter links stay valid; no sources, no pip cache.
FROM python:3.11-slim
COPY --from=build /opt/dapr-workflows /opt/dapr-workflows
RUN groupadd --system --gid 10001 dapr-workflows \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/dapr-workflows \
       --shell /usr/sbin/nologin dapr-workflows \
    && mkdir -p /var/lib/dapr-workflows \
    && chown 10001:10001 /var/lib/dapr-workflows
ENV PATH=/opt/dapr-workflows/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAPR_WORKFLOWS_STORE=sqlite:////var/lib/dapr-workflows/dapr-workflows.db
WORKDIR /var/lib/dapr-workflows
# Numeric, so that Kubernetes can check runAsNonRoot.
USER 10001:10001
# No EXPOSE: daprd talks to the component through the socket; the TCP listeners (4100 Durable
# Task for Dapr's SDK, 4001 for durabletask's, 4180 HTTP API) are for the pod's own containers.
ENTRYPOINT ["dapr-workflows", "serve"]
