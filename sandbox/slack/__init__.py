"""A strict fake Slack that the real ``slack_sdk`` clients and a real Bolt app talk to.

``SlackSandbox`` (``app``) serves the workspace; ``SlackDriver`` and ``SocketModeDriver``
(``driver``) play Slack's side towards a bot. The Web API families live in ``users``,
``conversations``, ``chat``, ``views``, ``files``; ``response_url`` handling in ``responses``;
Socket Mode in ``socket_mode``; Block Kit validation in ``blockkit``; the workspace model in
``models``; shared state and wire shapes in ``state`` and ``workspace``.
"""

from sandbox.slack.app import SlackSandbox
from sandbox.slack.blockkit import validate_message_blocks, validate_view
from sandbox.slack.driver import DriverResponse, SlackDriver, SocketModeDriver
from sandbox.slack.limits import DEFAULT_USER
from sandbox.slack.models import (
    Channel,
    EphemeralMessage,
    Message,
    RecordedCall,
    ResponsePost,
    SandboxFile,
    SocketConnection,
    SocketEnvelope,
    User,
    Usergroup,
    View,
)
from sandbox.slack.wire import sign

__all__ = [
    "DEFAULT_USER",
    "Channel",
    "DriverResponse",
    "EphemeralMessage",
    "Message",
    "RecordedCall",
    "ResponsePost",
    "SandboxFile",
    "SlackDriver",
    "SlackSandbox",
    "SocketConnection",
    "SocketEnvelope",
    "SocketModeDriver",
    "User",
    "Usergroup",
    "View",
    "sign",
    "validate_message_blocks",
    "validate_view",
]
