"""The Dapr pluggable component: a gRPC server on a Unix socket that daprd discovers."""
