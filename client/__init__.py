"""kaa-wire endpoint client: boot, resolve through a signed list, register, keep working.

Depends on the standard library, ``cryptography`` and ``kaa_wire`` only (kaa_wire uses its
compiled extension when it is built). The protocol itself (framing, codec, crypto, the
per-connection state machines) is kaa_wire's sans-IO core; this package adds the device
policy (``_policy``), the persistent identity and state (``_state``) and two thin
transports over that one policy: blocking sockets (``_blocking``) and asyncio
(``_asyncio``). docs/client.md is the guide.

    from client import Device

    with Device.open("device/", "sdk.json") as device:
        outcome = device.register(b'{"model": "t1000"}')
        if outcome.status == "revoked": ...
"""

from client._device import Device, load_sdk_config
from client._policy import (
    Attempt,
    Connected,
    Event,
    Exchange,
    Failed,
    KeyRotated,
    NoOperationsServers,
    Outcome,
    RegistrationPlan,
    RetryPolicy,
    Revoked,
    Sleep,
    Waiting,
    backoff_delay,
    order_nodes,
)
from client._state import (
    ApplicationState,
    CorruptKeyError,
    CorruptTrustError,
    DeviceState,
    MissingKeyError,
    ServerInfo,
    StateDir,
    StateDirBusy,
    StateError,
    profile_hash,
)
from client._trust import BootstrapTrust

__all__ = [
    "Device",
    "load_sdk_config",
    "Attempt",
    "Connected",
    "Event",
    "Exchange",
    "Failed",
    "KeyRotated",
    "NoOperationsServers",
    "Outcome",
    "RegistrationPlan",
    "RetryPolicy",
    "Revoked",
    "Sleep",
    "Waiting",
    "backoff_delay",
    "order_nodes",
    "ApplicationState",
    "BootstrapTrust",
    "CorruptKeyError",
    "CorruptTrustError",
    "DeviceState",
    "MissingKeyError",
    "ServerInfo",
    "StateDir",
    "StateDirBusy",
    "StateError",
    "profile_hash",
]
