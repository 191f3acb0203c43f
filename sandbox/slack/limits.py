"""Slack's limits and tables: rate-limit tiers, size limits, ticket lifetimes, name rules."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Final

TIER_PER_MINUTE: Final[Mapping[int, int]] = {1: 1, 2: 20, 3: 50, 4: 100}

#: Per-method tiers (protocols C.4, from Slack's own MethodsRateLimits table).
METHOD_TIERS: Final[Mapping[str, int]] = {
    "auth.test": 4,  # "special"; treated as Tier 4
    "apps.connections.open": 1,
    "team.info": 3,
    "conversations.archive": 2,
    "conversations.create": 2,
    "conversations.history": 3,
    "conversations.info": 3,
    "conversations.invite": 3,
    "conversations.join": 3,
    "conversations.list": 2,
    "conversations.members": 4,
    "conversations.open": 3,
    "conversations.rename": 2,
    "conversations.replies": 3,
    "conversations.setPurpose": 2,
    "conversations.setTopic": 2,
    "conversations.unarchive": 2,
    "chat.delete": 3,
    "chat.getPermalink": 4,  # "special"; treated as Tier 4
    "chat.postEphemeral": 4,
    "chat.update": 3,
    "files.completeUploadExternal": 4,
    "files.getUploadURLExternal": 4,
    "files.info": 4,
    "reactions.add": 3,
    "usergroups.list": 2,
    "usergroups.users.list": 2,
    "users.info": 4,
    "users.list": 2,
    "users.lookupByEmail": 3,
    "views.open": 4,
    "views.push": 4,
    "views.update": 4,
}

MAX_MESSAGE_BLOCKS: Final = 50
MAX_VIEW_BLOCKS: Final = 100
MAX_MESSAGE_TEXT: Final = 40_000
MAX_CHANNEL_NAME: Final = 80
MAX_TOPIC: Final = 250
MAX_PURPOSE: Final = 250
RESPONSE_URL_MAX_USES: Final = 5
RESPONSE_URL_TTL: Final = 30 * 60.0
VIEW_STACK_LIMIT: Final = 3
#: Slack expects a Socket Mode envelope to be acknowledged within 3 seconds.
SOCKET_ACK_TIMEOUT: Final = 3.0
#: How long an ``apps.connections.open`` URL may wait to be used (sandbox choice; it is one-time).
SOCKET_TICKET_TTL: Final = 30.0
#: Methods that take the app-level token (``xapp-``) instead of the bot token.
APP_LEVEL_METHODS: Final = frozenset({"apps.connections.open"})

CHANNEL_NAME_RE: Final = re.compile(r"^[a-z0-9_-]+$")
EMOJI_NAME_RE: Final = re.compile(r"^[a-z0-9_+'-]+(::skin-tone-[2-6])?$")
ID_ALPHABET: Final = string.ascii_letters + string.digits

SYSTEM_SUBTYPES: Final = frozenset(
    {
        "channel_join",
        "channel_leave",
        "channel_topic",
        "channel_purpose",
        "channel_name",
        "channel_archive",
        "channel_unarchive",
    }
)

DEFAULT_USER: Final = "U0ALICE"
