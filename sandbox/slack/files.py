"""``files.*``: the three-step ``files_upload_v2`` flow, the upload URL and file downloads."""

from __future__ import annotations

import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.slack.models import Channel, SandboxFile
from sandbox.slack.wire import SlackError, int_arg, invalid_args, json_arg, opt_str, req_str
from sandbox.slack.workspace import Workspace

JSON = dict[str, Any]


class FilesApi(Workspace):
    """``files.getUploadURLExternal`` -> POST the bytes -> ``files.completeUploadExternal``."""

    def _files_get_upload_url_external(self, args: JSON) -> JSON:
        filename = req_str(args, "filename")
        if opt_str(args, "length") in (None, ""):
            raise invalid_args("missing required field: length")
        length = int_arg(args, "length", 0)
        if length < 0:
            raise invalid_args("must be a non-negative integer [json-pointer:/length]")
        key = secrets.token_urlsafe(16)
        f = SandboxFile(
            id=self._new_id("F"),
            name=filename,
            length=length,
            user=self.bot_user_id,
            created=int(time.time()),
            title=filename,
            alt_txt=opt_str(args, "alt_txt"),
            snippet_type=opt_str(args, "snippet_type"),
            upload_key=key,
        )
        self.files[f.id] = f
        self._uploads[key] = f.id
        return {"upload_url": f"{self.base_url}/upload/v1/{key}", "file_id": f.id}

    def _files_complete_upload_external(self, args: JSON) -> JSON:
        pending = self._uploaded_files(args)
        targets = self._share_targets(args)
        thread_ts = opt_str(args, "thread_ts") or None
        if thread_ts and len(targets) != 1:
            raise invalid_args("thread_ts requires exactly one channel")
        comment = opt_str(args, "initial_comment") or ""
        for f, title in pending:
            f.completed = True
            if title:
                f.title = title
            self._uploads.pop(f.upload_key, None)
        for channel in targets:
            msg = self._post(channel, comment, files=[f.id for f, _ in pending], thread_ts=thread_ts)
            for f, _ in pending:
                f.shares[channel.id] = msg.ts
        return {"files": [{"id": f.id, "title": f.title} for f, _ in pending]}

    def _uploaded_files(self, args: JSON) -> list[tuple[SandboxFile, str | None]]:
        """The ``files`` argument: files whose bytes arrived, each with its new title (if any)."""
        items = json_arg(args, "files", "invalid_arguments")
        if items is None:
            raise invalid_args("missing required field: files")
        if not isinstance(items, list) or not items:
            raise invalid_args("must provide a non-empty array [json-pointer:/files]")
        if len(items) > 100:
            raise SlackError("file_uploads_exceed_limit")
        pending: list[tuple[SandboxFile, str | None]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise invalid_args(f"missing required field: id [json-pointer:/files/{i}]")
            f = self.files.get(item["id"])
            if f is None or f.completed:
                raise SlackError("file_not_found")
            if f.data is None:
                raise SlackError("file_not_found", messages=[f"[ERROR] no bytes were uploaded for {f.id}"])
            title = item.get("title")
            pending.append((f, title if isinstance(title, str) and title else None))
        return pending

    def _share_targets(self, args: JSON) -> list[Channel]:
        """``channel_id`` then ``channels``: each visible, unarchived and with the bot in it."""
        targets: list[Channel] = []
        channel_ids = [c for c in (opt_str(args, "channels") or "").split(",") if c]
        single = opt_str(args, "channel_id")
        if single:
            channel_ids.insert(0, single)
        for cid in dict.fromkeys(channel_ids):
            channel = self.channels.get(cid)
            if channel is None or not self._visible(channel):
                raise SlackError("channel_not_found")
            self._require_unarchived(channel)
            self._require_member(channel)
            targets.append(channel)
        return targets

    def _files_info(self, args: JSON) -> JSON:
        f = self.files.get(req_str(args, "file"))
        if f is None or not f.completed:
            raise SlackError("file_not_found")
        return {"file": self._file_json(f), "comments": [], "response_metadata": {"next_cursor": ""}}

    # -- the upload URL and downloads (not under /api/) ------------------------------------------

    async def _handle_upload(self, request: web.Request) -> web.Response:
        file_id = self._uploads.get(request.match_info["key"])
        f = self.files.get(file_id) if file_id else None
        if f is None or f.completed:
            return web.Response(status=404, text="upload URL not found or already completed")
        data: bytes | None = None
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, aiohttp.BodyPartReader) and part.name == "file":
                    data = bytes(await part.read())
                    break
            if data is None:
                return web.Response(status=400, text="multipart upload without a 'file' part")
        else:
            data = await request.read()
        if len(data) != f.length:
            self._notify()
            return web.Response(
                status=400,
                text=f"length mismatch: files.getUploadURLExternal said {f.length} bytes, got {len(data)}",
            )
        f.data = data
        self._notify()
        return web.Response(status=200, text=f"OK - {len(data)}")

    async def _handle_file_download(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth[7:].strip() != self.bot_token:
            return web.Response(status=302, headers={"Location": f"https://{self.team_domain}.slack.com/"})
        f = self.files.get(request.match_info["file_id"])
        if f is None or f.data is None or not f.completed:
            return web.Response(status=404, text="file not found")
        return web.Response(body=f.data, content_type=f.mimetype)
