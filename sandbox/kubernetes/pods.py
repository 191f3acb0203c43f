"""Pods: creation for an owner, status as the kubelet reports it, deletion (StatefulSet pods
come back), scheduling of pending pods, and Jobs."""

from __future__ import annotations

import copy
import functools
from typing import Any

from sandbox.kubernetes.nodes import Nodes
from sandbox.kubernetes.objects import controller_ref, meta_of, timestamp
from sandbox.kubernetes.resources import RESOURCES

JSON = dict[str, Any]


class Pods(Nodes):
    """Pods as controllers and the kubelet make them: created for an owner, bound to a node, ready
    (or crash-looping) after ``rollout_delay``, and deleted with their containers' events."""

    def _schedule_pending(self) -> None:
        """Bind unscheduled pods once a node accepts pods again (e.g. after uncordon)."""
        for pod in self._objects("pods"):
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or (pod.get("status") or {}).get("phase") != "Pending":
                continue
            node = self._pick_node()
            if node is None:
                return
            spec["nodeName"] = node
            pod["status"] = self._pod_status(spec, "pending")
            self._store_put(RESOURCES["pods"], pod)
            meta = meta_of(pod)
            crashing = (controller_ref(pod) or {}).get("uid") in self._stalled_rs
            namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
            state = "crash" if crashing else "ready"
            self._schedule(
                self.rollout_delay, functools.partial(self._set_pod_state, namespace, name, uid, state)
            )

    def _create_pod_for(
        self, owner: JSON, owner_kind: str, name: str, crashing: bool, node: str | None = None
    ) -> JSON:
        owner_meta = meta_of(owner)
        template = copy.deepcopy(((owner.get("spec") or {}).get("template")) or {})
        template_meta = template.get("metadata") or {}
        node = node or self._pick_node()
        pod_spec = template.get("spec") or {}
        pod_spec.setdefault("restartPolicy", "Always")
        pod_spec.setdefault("terminationGracePeriodSeconds", 30)
        pod_spec.setdefault("serviceAccountName", "default")
        if node:
            pod_spec["nodeName"] = node
        pod: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": owner_meta["namespace"],
                "uid": self._next_uid(),
                "creationTimestamp": timestamp(),
                "labels": dict(template_meta.get("labels") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": owner.get("apiVersion", "apps/v1"),
                        "kind": owner_kind,
                        "name": owner_meta["name"],
                        "uid": owner_meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
            "status": self._pod_status(pod_spec, "pending" if node else "unscheduled"),
        }
        if template_meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(template_meta["annotations"])
        self._store_put(RESOURCES["pods"], pod)
        self._event(
            owner, "SuccessfulCreate", f"Created pod: {name}", component=f"{owner_kind.lower()}-controller"
        )
        pod_uid = pod["metadata"]["uid"]
        if crashing:
            self._schedule(
                self.rollout_delay,
                lambda: self._set_pod_state(owner_meta["namespace"], name, pod_uid, "crash"),
            )
        elif node:
            self._schedule(
                self.rollout_delay,
                lambda: self._set_pod_state(owner_meta["namespace"], name, pod_uid, "ready"),
            )
        return pod

    def _pod_status(self, pod_spec: JSON, state: str, started: str | None = None) -> JSON:
        now = timestamp()
        ready = state in ("ready", "succeeded")
        containers = [_container_status(c, state, now, started) for c in pod_spec.get("containers") or []]
        phase = {"ready": "Running", "crash": "Running", "succeeded": "Succeeded"}.get(state, "Pending")
        conditions = [
            {
                "type": "PodScheduled",
                "status": "False" if state == "unscheduled" else "True",
                "lastTransitionTime": now,
            }
        ]
        if state != "unscheduled":
            conditions.append(
                {
                    "type": "Ready",
                    "status": "True" if ready and state == "ready" else "False",
                    "lastTransitionTime": now,
                }
            )
            conditions.append(
                {
                    "type": "ContainersReady",
                    "status": "True" if state == "ready" else "False",
                    "lastTransitionTime": now,
                }
            )
        status_obj: JSON = {"phase": phase, "conditions": conditions, "qosClass": "Burstable"}
        if state != "unscheduled":
            status_obj["containerStatuses"] = containers
            status_obj["startTime"] = started or now
            status_obj["podIP"] = f"10.244.{self._state.uid % 3}.{(self._state.uid * 7) % 250 + 2}"
            status_obj["hostIP"] = "10.0.0.1"
        else:
            conditions[0]["reason"] = "Unschedulable"
            conditions[0]["message"] = "0/3 nodes are available: 3 node(s) were unschedulable."
        return status_obj

    def _set_pod_state(self, namespace: str, name: str, uid: str, state: str) -> None:
        pod = self._obj("pods", namespace, name)
        if pod is None or meta_of(pod)["uid"] != uid:
            return
        pod["status"] = self._pod_status(
            pod.get("spec") or {}, state, (pod.get("status") or {}).get("startTime")
        )
        self._store_put(RESOURCES["pods"], pod)

    def _delete_pod(self, pod: JSON, *, reason: str) -> None:
        self._store_delete(RESOURCES["pods"], pod)
        for container in (pod.get("spec") or {}).get("containers") or []:
            self._event(pod, "Killing", f"Stopping container {container.get('name')}", component="kubelet")
        ref = controller_ref(pod) or {}
        if ref.get("kind") == "StatefulSet" and reason != "scale down":
            # StatefulSet pods come back with the same name (and a new uid).
            meta = meta_of(pod)
            owner = {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": ref["name"], "namespace": meta["namespace"], "uid": ref["uid"]},
                "spec": {
                    "template": {
                        "metadata": {"labels": dict(meta.get("labels") or {})},
                        "spec": {k: v for k, v in (pod.get("spec") or {}).items() if k != "nodeName"},
                    }
                },
            }
            self._create_pod_for(owner, "StatefulSet", meta["name"], False)

    def _start_job(self, job: JSON) -> None:
        meta = meta_of(job)
        job["status"] = {"startTime": timestamp(), "active": 1, "ready": 0}
        self._store_put(RESOURCES["jobs"], job)
        pod = self._create_pod_for(job, "Job", f"{meta['name']}-{self._suffix()}", False)
        pod_name, namespace, job_name = meta_of(pod)["name"], meta["namespace"], meta["name"]

        def finish() -> None:
            current = self._obj("jobs", namespace, job_name)
            pod_now = self._obj("pods", namespace, pod_name)
            if current is None or pod_now is None:
                return
            pod_now["status"] = self._pod_status(pod_now.get("spec") or {}, "succeeded")
            self._store_put(RESOURCES["pods"], pod_now)
            now = timestamp()
            current["status"] = {
                "startTime": (current.get("status") or {}).get("startTime", now),
                "completionTime": now,
                "succeeded": 1,
                "ready": 0,
                "conditions": [
                    {
                        "type": "SuccessCriteriaMet",
                        "status": "True",
                        "lastProbeTime": now,
                        "lastTransitionTime": now,
                    },
                    {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
                ],
            }
            self._store_put(RESOURCES["jobs"], current)

        # Pod readiness runs first (same delay, scheduled earlier), then the job completes.
        self._schedule(self.rollout_delay * 2, finish)


def _container_status(container: JSON, state: str, now: str, started: str | None) -> JSON:
    """A container's status in a pod that is pending, ready, crash-looping or succeeded."""
    status: JSON = {
        "name": container.get("name"),
        "image": container.get("image"),
        "imageID": "",
        "ready": state == "ready",
        "restartCount": 0,
        "started": state == "ready",
    }
    if state == "ready":
        status["state"] = {"running": {"startedAt": started or now}}
    elif state == "crash":
        status["restartCount"] = 3
        status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 40s restarting failed container={container.get('name')}",
            }
        }
        status["lastState"] = {
            "terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}
        }
    elif state == "succeeded":
        status["state"] = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": started or now,
                "finishedAt": now,
            }
        }
    else:
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
    return status
