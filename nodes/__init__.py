"""The nodes: one module per node kind, the Node base and runtime, the registry and the CLI."""
