"""The Slack app manifest asks for exactly the scopes the code's Web API calls need."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from commands.dialogs import DECLARE_CALLBACK, MESSAGE_SHORTCUT

ROOT = Path(__file__).resolve().parents[2]
# Required bot scopes per Web API method (docs.slack.dev method pages).
METHOD_SCOPES: dict[str, set[str]] = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "chat.update": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "conversations.create": {"channels:manage"},
    "conversations.setTopic": {"channels:manage"},
    "conversations.invite": {"channels:manage"},
    "conversations.archive": {"channels:manage"},
    "conversations.list": {"channels:read"},
    "conversations.members": {"channels:read"},
    "conversations.history": {"channels:history"},
    "usergroups.list": {"usergroups:read"},
    "usergroups.users.list": {"usergroups:read"},
    "users.lookupByEmail": {"users:read", "users:read.email"},
    "users.info": {"users:read"},
    "files.getUploadURLExternal": {"files:write"},
    "files.completeUploadExternal": {"files:write"},
}
EVENT_SCOPES = {"reaction_added": {"reactions:read"}}
CALL = re.compile(r"\.call\(\s*\"([a-zA-Z.]+)\"")


def _methods_called() -> set[str]:
    methods = {"auth.test"}  # Bolt's authorization on the first request
    for path in [*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("commands").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        methods.update(CALL.findall(text))
        if "files_upload_v2(" in text:
            methods.update({"files.getUploadURLExternal", "files.completeUploadExternal"})
    return methods


def test_manifest_scopes_match_the_methods_the_code_calls() -> None:
    manifest = yaml.safe_load((ROOT / "slack-app-manifest.yaml").read_text())
    called = _methods_called()
    unknown = called - METHOD_SCOPES.keys()
    assert not unknown, f"add the scopes of {unknown} to METHOD_SCOPES and the manifest"
    needed = set().union(*(METHOD_SCOPES[m] for m in called))
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    needed |= set().union(*(EVENT_SCOPES[e] for e in events))
    needed.add("commands")
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed


def test_manifest_routes_everything_to_slack_events() -> None:
    manifest = yaml.safe_load((ROOT / "slack-app-manifest.yaml").read_text())
    urls = {
        manifest["features"]["slash_commands"][0]["url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
    }
    assert len(urls) == 1 and urls.pop().endswith("/slack/events")
    assert manifest["features"]["slash_commands"][0]["command"] == "/incident"
    assert manifest["features"]["slash_commands"][0]["should_escape"] is True


def test_manifest_declares_the_shortcuts_the_bot_listens_to() -> None:
    manifest = yaml.safe_load((ROOT / "slack-app-manifest.yaml").read_text())
    shortcuts = {s["callback_id"]: s for s in manifest["features"]["shortcuts"]}
    assert shortcuts[DECLARE_CALLBACK]["type"] == "global"
    assert shortcuts[MESSAGE_SHORTCUT]["type"] == "message"
    # Slack's limits: a name of at most 24 characters, a description of at most 150.
    assert all(len(s["name"]) <= 24 and len(s["description"]) <= 150 for s in shortcuts.values())
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
