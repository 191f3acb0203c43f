"""How users, services, escalation policies, incidents and notes look in REST answers and webhooks."""

from __future__ import annotations

from typing import Any

from sandbox.pagerduty.models import (
    WEB_URL,
    SandboxEscalationPolicy,
    SandboxIncident,
    SandboxNote,
    SandboxPriority,
    SandboxService,
    SandboxUser,
    iso,
)
from sandbox.pagerduty.state import PagerDutyState


class Representations(PagerDutyState):
    """References (``*_reference``) and full objects, with ``self`` and ``html_url`` links."""

    def _user_ref(self, user: SandboxUser) -> dict[str, Any]:
        return {
            "id": user.id,
            "type": "user_reference",
            "summary": user.name,
            "self": f"{self._api_url()}/users/{user.id}",
            "html_url": f"{WEB_URL}/users/{user.id}",
        }

    def _user(self, user: SandboxUser) -> dict[str, Any]:
        return {
            **self._user_ref(user),
            "type": "user",
            "name": user.name,
            "email": user.email,
            "time_zone": "Etc/UTC",
            "role": "user",
        }

    def _service_ref(self, service: SandboxService) -> dict[str, Any]:
        return {
            "id": service.id,
            "type": "service_reference",
            "summary": service.name,
            "self": f"{self._api_url()}/services/{service.id}",
            "html_url": f"{WEB_URL}/service-directory/{service.id}",
        }

    def _policy_ref(self, policy: SandboxEscalationPolicy) -> dict[str, Any]:
        return {
            "id": policy.id,
            "type": "escalation_policy_reference",
            "summary": policy.name,
            "self": f"{self._api_url()}/escalation_policies/{policy.id}",
            "html_url": f"{WEB_URL}/escalation_policies/{policy.id}",
        }

    def _priority_ref(self, priority_id: str | None) -> dict[str, Any] | None:
        priority = self.priorities.get(priority_id) if priority_id else None
        if priority is None:
            return None
        return {
            "id": priority.id,
            "type": "priority_reference",
            "summary": priority.name,
            "self": f"{self._api_url()}/priorities/{priority.id}",
            "html_url": None,
        }

    def _priority(self, priority: SandboxPriority) -> dict[str, Any]:
        return {
            **(self._priority_ref(priority.id) or {}),
            "type": "priority",
            "name": priority.name,
            "description": "",
            "order": priority.order,
            "color": "a8171c",
        }

    def _incident_ref(self, incident: SandboxIncident) -> dict[str, Any]:
        return {
            "id": incident.id,
            "type": "incident_reference",
            "summary": f"[#{incident.number}] {incident.title}",
            "self": f"{self._api_url()}/incidents/{incident.id}",
            "html_url": f"{WEB_URL}/incidents/{incident.id}",
        }

    def _rest_incident(self, incident: SandboxIncident) -> dict[str, Any]:
        service = self.services[incident.service_id]
        policy = self.escalation_policies[incident.escalation_policy_id]
        at = iso(incident.updated_at)
        return {
            **self._incident_ref(incident),
            "type": "incident",
            "incident_number": incident.number,
            "title": incident.title,
            "description": incident.title,
            "created_at": iso(incident.created_at),
            "updated_at": at,
            "status": incident.status,
            "incident_key": incident.incident_key,
            "service": self._service_ref(service),
            "assignments": [
                {"at": at, "assignee": self._user_ref(self.users[uid])} for uid in incident.assignee_ids
            ],
            "acknowledgements": [
                {"at": at, "acknowledger": self._user_ref(self.users[uid])}
                for uid in incident.acknowledger_ids
            ],
            "assigned_via": "escalation_policy",
            "last_status_change_at": at,
            "last_status_change_by": (
                self._user_ref(self.users[incident.last_changed_by])
                if incident.last_changed_by
                else self._service_ref(service)
            ),
            "escalation_policy": self._policy_ref(policy),
            "teams": [],
            "priority": self._priority_ref(incident.priority_id),
            "urgency": incident.urgency,
            "resolve_reason": None,
            "alert_counts": {
                "all": 1,
                "triggered": 0 if incident.status == "resolved" else 1,
                "resolved": 1 if incident.status == "resolved" else 0,
            },
            "incident_type": {"name": "incident_default"},
        }

    def _webhook_incident(self, incident: SandboxIncident) -> dict[str, Any]:
        service = self.services[incident.service_id]
        policy = self.escalation_policies[incident.escalation_policy_id]
        return {
            **self._incident_ref(incident),
            "type": "incident",
            "number": incident.number,
            "status": incident.status,
            "incident_key": incident.incident_key,
            "created_at": iso(incident.created_at),
            "reopened_at": iso(incident.reopened_at) if incident.reopened_at else None,
            "title": incident.title,
            "incident_type": {"name": "incident_default"},
            "service": self._service_ref(service),
            "assignees": [self._user_ref(self.users[uid]) for uid in incident.assignee_ids],
            "escalation_policy": self._policy_ref(policy),
            "teams": [],
            "priority": self._priority_ref(incident.priority_id),
            "urgency": incident.urgency,
            "conference_bridge": None,
            "resolve_reason": None,
        }

    def _rest_note(self, note: SandboxNote) -> dict[str, Any]:
        user = self.users.get(note.user_id) if note.user_id else None
        return {
            "id": note.id,
            "user": self._user_ref(user) if user else None,
            "channel": {"summary": "The PagerDuty REST API"},
            "content": note.content,
            "created_at": iso(note.created_at),
        }

    def _api_url(self) -> str:
        return self.base_url if self._port is not None else "https://api.pagerduty.com"
