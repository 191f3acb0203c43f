"""The REST API v2: incidents, notes, on-calls, users, services, escalation policies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sandbox.pagerduty.models import (
    STATUSES,
    SandboxIncident,
    SandboxNote,
    SandboxUser,
    invalid,
    not_found,
    utc_now,
)
from sandbox.pagerduty.webhooks import Webhooks
from sandbox.pagerduty.wire import paged_response, read_json_object


class RestApi(Webhooks):
    """The REST handlers; writes need a ``From`` header naming a known user."""

    def _requester(self, request: web.Request) -> SandboxUser:
        email = request.headers.get("From")
        if not email:
            raise invalid("The From header is required and must be a valid user's email address")
        user = self.user_by_email(email)
        if user is None:
            raise invalid(f"Requester User Not Found: no user with email {email}")
        return user

    async def _list_incidents(self, request: web.Request) -> web.Response:
        statuses = request.query.getall("statuses[]", [])
        items = [
            self._rest_incident(i) for i in self.incidents.values() if not statuses or i.status in statuses
        ]
        return paged_response(request, items, "incidents")

    async def _get_incident(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        return web.json_response({"incident": self._rest_incident(incident)})

    def _apply_update(self, incident: SandboxIncident, update: Mapping[str, Any], user: SandboxUser) -> None:
        if update.get("type") not in ("incident", "incident_reference"):
            raise invalid("incident.type must be incident or incident_reference")
        status = update.get("status")
        if status is not None and status not in STATUSES:
            raise invalid("Status must be one of triggered, acknowledged, or resolved.")
        resolution = update.get("resolution")
        if resolution is not None and (not isinstance(resolution, str) or status != "resolved"):
            raise invalid("resolution must be a string and requires status resolved")
        title = update.get("title")
        if title is not None and (not isinstance(title, str) or not title):
            raise invalid("title must be a non-empty string")
        urgency = update.get("urgency")
        if urgency is not None and urgency not in ("high", "low"):
            raise invalid("urgency must be high or low")
        priority_id = self._requested_priority(update)
        policy_id = self._requested_policy(update, incident)
        events = self._transition(incident, status, user) if status else []
        if policy_id is not None:
            # Handed to another policy: its first level is assigned (and notified).
            policy = self.escalation_policies[policy_id]
            incident.escalation_policy_id = policy_id
            incident.assignee_ids = list(policy.levels[0]) if policy.levels else []
            events.append("incident.reassigned")
        if resolution is not None and "incident.resolved" in events:
            incident.resolution = resolution
        if title is not None:
            incident.title = title
        if urgency is not None:
            incident.urgency = urgency
        if priority_id is not None and priority_id != incident.priority_id:
            incident.priority_id = priority_id
            events.append("incident.priority_updated")
        for event_type in events:
            self._emit(event_type, incident, user)

    def _requested_priority(self, update: Mapping[str, Any]) -> str | None:
        """The id of a ``priority`` reference in an update; unknown ids are PagerDuty's 400."""
        if "priority" not in update or update["priority"] is None:
            return None
        priority = update["priority"]
        if (
            not isinstance(priority, dict)
            or not isinstance(priority.get("id"), str)
            or priority.get("type") not in ("priority", "priority_reference")
        ):
            raise invalid("priority must be a priority_reference with an id")
        if priority["id"] not in self.priorities:
            raise invalid("Priority not found")
        return str(priority["id"])

    def _requested_policy(
        self, update: Mapping[str, Any], incident: SandboxIncident | None = None
    ) -> str | None:
        """The id of an ``escalation_policy`` reference; an unknown one is PagerDuty's 400, as is
        one given with assignments or (`incident`: an update) for a resolved incident."""
        ref = update.get("escalation_policy")
        if ref is None:
            return None
        if update.get("assignments"):
            raise invalid("escalation_policy and assignments cannot both be given")
        if incident is not None and incident.status == "resolved":
            raise invalid("Incident Already Resolved")
        if not isinstance(ref, dict) or ref.get("type") != "escalation_policy_reference":
            raise invalid("escalation_policy must be an escalation_policy_reference with an id")
        if ref.get("id") not in self.escalation_policies:
            raise invalid("Escalation Policy Not Found")
        return str(ref["id"])

    async def _create(self, request: web.Request) -> web.Response:
        """``POST /incidents``: on a service, optionally assigned to another escalation policy;
        a second open incident with the same ``incident_key`` on the service is refused."""
        user = self._requester(request)
        body = await read_json_object(request)
        spec = body.get("incident")
        if not isinstance(spec, dict) or spec.get("type") != "incident":
            raise invalid("Body must contain an 'incident' object of type incident")
        title = spec.get("title")
        if not isinstance(title, str) or not title.strip():
            raise invalid("Title cannot be empty")
        service = spec.get("service")
        if not isinstance(service, dict) or service.get("type") != "service_reference":
            raise invalid("service must be a service_reference with an id")
        if service.get("id") not in self.services:
            raise invalid("Service Not Found")
        urgency = spec.get("urgency", "high")
        if urgency not in ("high", "low"):
            raise invalid("urgency must be high or low")
        key = spec.get("incident_key")
        if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
            raise invalid("incident_key must be 1..255 characters")
        if key is not None and any(
            i.incident_key == key and i.service_id == service["id"] and i.status != "resolved"
            for i in self.incidents.values()
        ):
            raise invalid("Open incident with matching dedup key already exists on this service")
        incident = self.create_incident(
            title, service["id"], urgency, self._requested_policy(spec), incident_key=key
        )
        self._emit("incident.triggered", incident, user)
        return web.json_response({"incident": self._rest_incident(incident)}, status=201)

    async def _list_priorities(self, request: web.Request) -> web.Response:
        ordered = sorted(self.priorities.values(), key=lambda p: p.order)
        return paged_response(request, [self._priority(p) for p in ordered], "priorities")

    async def _update_incident(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        user = self._requester(request)
        body = await read_json_object(request)
        update = body.get("incident")
        if not isinstance(update, dict):
            raise invalid("Body must contain an 'incident' object")
        self._apply_update(incident, update, user)
        return web.json_response({"incident": self._rest_incident(incident)})

    async def _bulk_update(self, request: web.Request) -> web.Response:
        user = self._requester(request)
        body = await read_json_object(request)
        updates = body.get("incidents")
        if not isinstance(updates, list) or not updates:
            raise invalid("Body must contain a non-empty 'incidents' list")
        targets = []
        for update in updates:
            if not isinstance(update, dict) or not isinstance(update.get("id"), str):
                raise invalid("Each incident needs an id")
            targets.append((self._incident(update["id"]), update))
        for incident, update in targets:
            self._apply_update(incident, update, user)
        return web.json_response({"incidents": [self._rest_incident(i) for i, _ in targets]})

    async def _list_notes(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        return web.json_response({"notes": [self._rest_note(n) for n in incident.notes]})

    async def _create_note(self, request: web.Request) -> web.Response:
        incident = self._incident(request.match_info["id"])
        user = self._requester(request)
        body = await read_json_object(request)
        note_body = body.get("note")
        if not isinstance(note_body, dict):
            raise invalid("Body must contain a 'note' object")
        content = note_body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise invalid("Note content must be a non-empty string")
        if len(content) > 25000:
            raise invalid("Note content is longer than 25000 characters")
        self._note_numbers += 1
        note = SandboxNote(f"PN{self._note_numbers:05d}", content, user.id, utc_now())
        incident.notes.append(note)
        self._emit("incident.annotated", incident, user, note=note)
        return web.json_response({"note": self._rest_note(note)}, status=201)

    async def _oncalls(self, request: web.Request) -> web.Response:
        policy_ids = request.query.getall("escalation_policy_ids[]", [])
        user_ids = request.query.getall("user_ids[]", [])
        include = request.query.getall("include[]", [])
        for policy_id in policy_ids:
            if policy_id not in self.escalation_policies:
                raise invalid(f"Escalation policy {policy_id} not found")
        earliest = request.query.get("earliest") == "true"
        items: list[dict[str, Any]] = []
        seen: set[tuple[str, int, str]] = set()
        for policy in self.escalation_policies.values():
            if policy_ids and policy.id not in policy_ids:
                continue
            for level_index, level in enumerate(policy.levels, start=1):
                for user_id in level:
                    if user_ids and user_id not in user_ids:
                        continue
                    if earliest and (policy.id, level_index, user_id) in seen:
                        continue
                    seen.add((policy.id, level_index, user_id))
                    user = self.users[user_id]
                    items.append(
                        {
                            "escalation_policy": self._policy_ref(policy),
                            "escalation_level": level_index,
                            "schedule": None,
                            "user": self._user(user) if "users" in include else self._user_ref(user),
                            "start": None,
                            "end": None,
                        }
                    )
        return paged_response(request, items, "oncalls")

    async def _list_users(self, request: web.Request) -> web.Response:
        return paged_response(request, [self._user(u) for u in self.users.values()], "users")

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["id"])
        if user is None:
            raise not_found(f"User {request.match_info['id']}")
        return web.json_response({"user": self._user(user)})

    async def _get_service(self, request: web.Request) -> web.Response:
        service = self.services.get(request.match_info["id"])
        if service is None:
            raise not_found(f"Service {request.match_info['id']}")
        policy = self.escalation_policies[service.escalation_policy_id]
        return web.json_response(
            {
                "service": {
                    **self._service_ref(service),
                    "type": "service",
                    "name": service.name,
                    "status": "active",
                    "escalation_policy": self._policy_ref(policy),
                }
            }
        )

    async def _get_policy(self, request: web.Request) -> web.Response:
        policy = self.escalation_policies.get(request.match_info["id"])
        if policy is None:
            raise not_found(f"Escalation policy {request.match_info['id']}")
        rules = [
            {
                "escalation_delay_in_minutes": 30,
                "targets": [self._user_ref(self.users[uid]) for uid in level],
            }
            for level in policy.levels
        ]
        return web.json_response(
            {
                "escalation_policy": {
                    **self._policy_ref(policy),
                    "type": "escalation_policy",
                    "name": policy.name,
                    "escalation_rules": rules,
                }
            }
        )
