"""What every Web API method shares: how stored objects look on the wire, and posting messages."""

from __future__ import annotations

import copy
import time
import urllib.parse
from typing import Any

from sandbox.slack.blockkit import validate_message_blocks
from sandbox.slack.limits import MAX_MESSAGE_TEXT
from sandbox.slack.models import Channel, Message, SandboxFile
from sandbox.slack.state import WorkspaceState
from sandbox.slack.wire import SlackError, json_arg, opt_str

JSON = dict[str, Any]


class Workspace(WorkspaceState):
    """What the Web API methods share on top of the state: the wire shapes of stored objects
    (``message_json``, channels, files, ``snapshot``) and validated message posting."""

    # -- how stored objects look on the wire --------------------------------------------------

    def message_json(self, msg: Message) -> JSON:
        """A stored message as the Web API and interaction payloads show it."""
        d: JSON = {"type": "message", "ts": msg.ts, "user": msg.user, "text": msg.text, "team": self.team_id}
        if msg.subtype is not None:
            d["subtype"] = msg.subtype
        if msg.bot_id is not None:
            d["bot_id"] = msg.bot_id
            d["app_id"] = self.app_id
            d["bot_profile"] = {
                "id": msg.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "team_id": self.team_id,
                "deleted": False,
            }
        self._add_content_fields(d, msg)
        channel = self.channels.get(msg.channel)
        if msg.thread_ts is not None:
            d["thread_ts"] = msg.thread_ts
            if msg.is_reply:
                parent = channel.message(msg.thread_ts) if channel else None
                if parent is not None:
                    d["parent_user_id"] = parent.user
                if msg.reply_broadcast:
                    d["subtype"] = "thread_broadcast"
        if channel is not None:
            self._add_thread_summary(d, msg, channel)
        return d

    def _add_content_fields(self, d: JSON, msg: Message) -> None:
        """Blocks, attachments, files, metadata, edits, reactions and the bot's overrides, in Slack's order."""
        if msg.blocks is not None:
            d["blocks"] = copy.deepcopy(msg.blocks)
        if msg.attachments is not None:
            d["attachments"] = copy.deepcopy(msg.attachments)
        if msg.files:
            d["files"] = [self._file_json(self.files[f]) for f in msg.files if f in self.files]
            d["upload"] = True
            d["display_as_bot"] = False
        if msg.metadata is not None:
            d["metadata"] = copy.deepcopy(msg.metadata)
        if msg.edited is not None:
            d["edited"] = dict(msg.edited)
        if msg.reactions:
            d["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in msg.reactions.items()
            ]
        for key in ("username", "icon_emoji", "icon_url"):
            value = getattr(msg, key)
            if value is not None:
                d[key] = value

    @staticmethod
    def _add_thread_summary(d: JSON, msg: Message, channel: Channel) -> None:
        """A thread parent carries its reply count, repliers and latest reply."""
        replies = [m for m in channel.messages if m.thread_ts == msg.ts and m.ts != msg.ts]
        if not replies:
            return
        reply_users = list(dict.fromkeys(m.user for m in replies))
        d.update(
            {
                "thread_ts": msg.ts,
                "reply_count": len(replies),
                "reply_users_count": len(reply_users),
                "latest_reply": replies[-1].ts,
                "reply_users": reply_users,
                "is_locked": False,
                "subscribed": False,
            }
        )

    def snapshot(self) -> JSON:
        """A JSON-able picture of the workspace (for assertions and the web view)."""
        return {
            "team": {"id": self.team_id, "name": self.team_name, "domain": self.team_domain},
            "bot": {"user_id": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id},
            "users": [u.to_api(self.team_id) for u in self.users.values()],
            "usergroups": [g.to_api(self.team_id, include_users=True) for g in self.usergroups.values()],
            "channels": [
                {
                    **self._channel_json(c),
                    "members": list(c.members),
                    "messages": [
                        {**self.message_json(m), "edits": copy.deepcopy(m.edits)} for m in c.messages
                    ],
                }
                for c in self.channels.values()
            ],
            "files": [self._file_json(f) for f in self.files.values()],
            "ephemerals": [
                {
                    "channel": e.channel,
                    "user": e.user,
                    "ts": e.ts,
                    "text": e.text,
                    "blocks": copy.deepcopy(e.blocks),
                    "thread_ts": e.thread_ts,
                    "source": e.source,
                }
                for e in self.ephemerals
            ],
            "views": [v.to_api() | {"user_id": v.user_id, "closed": v.closed} for v in self.views.values()],
            "responses": [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "via": r.via,
                    "channel_id": r.channel_id,
                    "user_id": r.user_id,
                    "time": r.time,
                    "status": r.status,
                    "error": r.error,
                    "body": copy.deepcopy(r.body),
                }
                for r in self.responses
            ],
            "calls": [
                {"method": c.method, "time": c.time, "status": c.status, "ok": c.ok, "error": c.error}
                for c in self.calls
            ],
            "socket_mode": {
                "connections": [
                    {"id": c.id, "opened": c.opened, "closed": c.closed, "open": c.is_open}
                    for c in self.socket_connections
                ],
                "envelopes": [
                    {
                        **e.message(),
                        "payload": copy.deepcopy(e.payload),
                        "connection_id": e.connection_id,
                        "sent": e.sent,
                        "acked": e.acked,
                        "ack_payload": copy.deepcopy(e.ack_payload),
                        "ack_time": e.ack_time,
                        "error": e.error,
                    }
                    for e in self.socket_envelopes
                ],
            },
        }

    def _channel_json(self, channel: Channel) -> JSON:
        if channel.is_im:
            other = next((m for m in channel.members if m != self.bot_user_id), channel.name)
            return {
                "id": channel.id,
                "created": channel.created,
                "is_im": True,
                "is_org_shared": False,
                "user": other,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": channel.id,
            "name": channel.name,
            "is_channel": not channel.is_private,
            "is_group": channel.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "created": channel.created,
            "is_archived": channel.is_archived,
            "is_general": channel.is_general,
            "unlinked": 0,
            "name_normalized": channel.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "parent_conversation": None,
            "creator": channel.creator,
            "is_member": self.bot_user_id in channel.members,
            "topic": {
                "value": channel.topic,
                "creator": channel.topic_set_by,
                "last_set": channel.topic_set_at,
            },
            "purpose": {
                "value": channel.purpose,
                "creator": channel.purpose_set_by,
                "last_set": channel.purpose_set_at,
            },
            "previous_names": list(channel.previous_names),
            "num_members": len(channel.members),
        }

    def _file_json(self, f: SandboxFile) -> JSON:
        public = {cid: [{"ts": ts, "channel_name": self.channels[cid].name}] for cid, ts in f.shares.items()}
        quoted = urllib.parse.quote(f.name)
        return {
            "id": f.id,
            "created": f.created,
            "timestamp": f.created,
            "name": f.name,
            "title": f.title,
            "mimetype": f.mimetype,
            "filetype": f.filetype,
            "pretty_type": f.filetype.upper(),
            "user": f.user,
            "user_team": self.team_id,
            "editable": False,
            "size": f.length,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": any(not self.channels[c].is_private for c in f.shares),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{self._base_url}/files/{f.id}/{quoted}",
            "url_private_download": f"{self._base_url}/files/{f.id}/{quoted}?download=1",
            "permalink": f"https://{self.team_domain}.slack.com/files/{f.user}/{f.id}/{quoted}",
            "alt_txt": f.alt_txt,
            "channels": [c for c in f.shares if not self.channels[c].is_private],
            "groups": [c for c in f.shares if self.channels[c].is_private],
            "ims": [],
            "shares": {"public": public} if public else {},
            "comments_count": 0,
        }

    # -- posting ----------------------------------------------------------------------------------

    def _message_content(self, args: JSON, *, required: bool) -> tuple[str | None, Any, Any]:
        """Parse and validate text / blocks / attachments of a message-sending call."""
        text = opt_str(args, "text")
        blocks = json_arg(args, "blocks", "invalid_blocks_format")
        if blocks is not None and not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        attachments = json_arg(args, "attachments", "invalid_attachments")
        if attachments is not None and not isinstance(attachments, list):
            raise SlackError("invalid_attachments")
        if required and not text and not blocks and not attachments:
            raise SlackError("no_text")
        errors: list[str] = []
        if blocks is not None:
            errors += validate_message_blocks(blocks)
        for i, attachment in enumerate(attachments or []):
            if not isinstance(attachment, dict):
                raise SlackError("invalid_attachments")
            if "blocks" in attachment:
                errors += validate_message_blocks(attachment["blocks"], pointer=f"/attachments/{i}/blocks")
        if errors:
            raise SlackError("invalid_blocks", errors=errors, messages=[f"[ERROR] {e}" for e in errors])
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            text = text[:MAX_MESSAGE_TEXT]
        return text, blocks, attachments

    def _post(
        self,
        channel: Channel,
        text: str,
        *,
        blocks: list[JSON] | None = None,
        attachments: list[JSON] | None = None,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        subtype: str | None = None,
        files: list[str] | None = None,
        user: str | None = None,
        metadata: JSON | None = None,
    ) -> Message:
        user = user or self.bot_user_id
        msg = Message(
            channel=channel.id,
            ts=self._next_ts(),
            user=user,
            text=text,
            blocks=self._with_ids(blocks) if blocks is not None else None,
            attachments=copy.deepcopy(attachments) if attachments is not None else None,
            thread_ts=thread_ts,
            reply_broadcast=reply_broadcast,
            bot_id=self.bot_id if user == self.bot_user_id and subtype is None else None,
            subtype=subtype,
            files=list(files or []),
            metadata=metadata,
        )
        channel.messages.append(msg)
        return msg

    @staticmethod
    def _keep_previous_version(msg: Message) -> None:
        """Record the text, blocks and attachments a message had before an edit replaces them."""
        msg.edits.append(
            {
                "text": msg.text,
                "blocks": copy.deepcopy(msg.blocks),
                "attachments": copy.deepcopy(msg.attachments),
                "replaced_at": time.time(),
            }
        )

    def _system_message(self, channel: Channel, subtype: str, text: str, *, user: str | None = None) -> None:
        self._post(channel, text, subtype=subtype, user=user or self.bot_user_id)

    def _find_message(self, channel: Channel, ts: str) -> Message:
        msg = channel.message(ts)
        if msg is None:
            raise SlackError("message_not_found")
        return msg
