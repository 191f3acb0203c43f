"""``views.*`` (modals with trigger ids and the view stack) and the ``view_submission`` ack."""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import Any, cast

from sandbox.slack.blockkit import validate_view
from sandbox.slack.limits import VIEW_STACK_LIMIT
from sandbox.slack.models import Trigger, View
from sandbox.slack.wire import SlackError, invalid_args, json_arg, opt_str, req_str
from sandbox.slack.workspace import Workspace

JSON = dict[str, Any]


class ViewsApi(Workspace):
    """Modals: ``views.open`` / ``views.push`` (one-time ``trigger_id``, a stack of at most three)
    and ``views.update`` (by id or external id, optional hash check)."""

    def _view_payload(self, args: JSON) -> JSON:
        view = json_arg(args, "view", "invalid_arguments")
        if view is None:
            raise invalid_args("missing required field: view")
        errors = validate_view(view)
        if errors:
            raise SlackError("invalid_arguments", errors=errors, messages=[f"[ERROR] {e}" for e in errors])
        payload = cast(JSON, copy.deepcopy(view))
        payload["blocks"] = self._with_ids(payload["blocks"])
        return payload

    def _use_trigger(self, args: JSON) -> Trigger:
        trigger_id = req_str(args, "trigger_id")
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() - trigger.issued > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        trigger.used = True
        return trigger

    def _new_view(self, payload: JSON, user_id: str, root: str | None, previous: str | None) -> View:
        view_id = self._new_id("V")
        view = View(
            id=view_id,
            team_id=self.team_id,
            user_id=user_id,
            type=str(payload["type"]),
            payload=payload,
            hash=f"{int(time.time())}.{secrets.token_hex(4)}",
            app_id=self.app_id,
            bot_id=self.bot_id,
            root_view_id=root or view_id,
            previous_view_id=previous,
        )
        self.views[view_id] = view
        return view

    def _views_open(self, args: JSON) -> JSON:
        payload = self._view_payload(args)
        trigger = self._use_trigger(args)
        for old in self._view_stacks.get(trigger.user_id, []):
            self.views[old].closed = True
        view = self._new_view(payload, trigger.user_id, None, None)
        self._view_stacks[trigger.user_id] = [view.id]
        return {"view": view.to_api()}

    def _views_push(self, args: JSON) -> JSON:
        payload = self._view_payload(args)
        trigger = self._use_trigger(args)
        stack = self._view_stacks.get(trigger.user_id, [])
        if not stack:
            raise SlackError("invalid_trigger_id")
        if len(stack) >= VIEW_STACK_LIMIT:
            raise SlackError("push_limit_reached")
        view = self._new_view(payload, trigger.user_id, stack[0], stack[-1])
        stack.append(view.id)
        return {"view": view.to_api()}

    def _views_update(self, args: JSON) -> JSON:
        view_id = opt_str(args, "view_id")
        external_id = opt_str(args, "external_id")
        if not view_id and not external_id:
            raise invalid_args("missing required field: view_id or external_id")
        payload = self._view_payload(args)
        found: View | None = None
        if view_id:
            found = self.views.get(view_id)
        else:
            found = next(
                (v for v in self.views.values() if v.payload.get("external_id") == external_id), None
            )
        if found is None or found.closed:
            raise SlackError("not_found")
        expected = opt_str(args, "hash")
        if expected and expected != found.hash:
            raise SlackError("hash_conflict")
        found.payload = payload
        found.type = str(payload["type"])
        found.hash = f"{int(time.time())}.{secrets.token_hex(4)}"
        return {"view": found.to_api()}

    def _apply_view_ack(self, view: View, body: str) -> None:
        """Close / update / push the modal according to a view_submission ack, as Slack does."""
        try:
            ack = json.loads(body) if body.strip() else {}
        except ValueError:
            ack = {}
        action = ack.get("response_action") if isinstance(ack, dict) else None
        stack = self._view_stacks.get(view.user_id, [])
        if action == "errors":
            return
        if action in ("update", "push"):
            if not isinstance(ack.get("view"), dict) or validate_view(ack["view"]):
                return  # Slack shows an error and leaves the modal as it was
            payload = copy.deepcopy(ack["view"])
            payload["blocks"] = self._with_ids(payload["blocks"])
            if action == "update":
                view.payload = payload
                view.state_values = {}
            else:
                pushed = self._new_view(payload, view.user_id, view.root_view_id, view.id)
                stack.append(pushed.id)
            self._notify()
            return
        closing = list(stack) if action == "clear" else [view.id]
        for vid in closing:
            self.views[vid].closed = True
            if vid in stack:
                stack.remove(vid)
        self._notify()
