"""The registry store: the backend-neutral interface (``base``) and its backends."""

from servers.store.base import (
    AlreadyExists,
    Application,
    ApplicationChanges,
    AuditEntry,
    Balancing,
    Endpoint,
    EndpointKey,
    EndpointStatus,
    EndpointWrite,
    LeaseHeld,
    Node,
    NotFound,
    RegistryStore,
    SdkToken,
    StoreBusy,
    StoreError,
    WriteOutcome,
)
from servers.store.limits import StoreLimits

__all__ = [
    "AlreadyExists",
    "Application",
    "ApplicationChanges",
    "AuditEntry",
    "Balancing",
    "Endpoint",
    "EndpointKey",
    "EndpointStatus",
    "EndpointWrite",
    "LeaseHeld",
    "Node",
    "NotFound",
    "RegistryStore",
    "SdkToken",
    "StoreBusy",
    "StoreError",
    "StoreLimits",
    "WriteOutcome",
]
