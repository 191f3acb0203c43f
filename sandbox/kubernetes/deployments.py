"""The deployment controller: ReplicaSets per pod template, revisions, rollouts, rollbacks,
scaling, and Deployment/ReplicaSet status."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.kubernetes.objects import (
    annotations_of,
    meta_of,
    pod_ready,
    revision_of,
    scaled,
    template_hash,
    templates_equal,
    timestamp,
)
from sandbox.kubernetes.pods import Pods
from sandbox.kubernetes.resources import (
    CHANGE_CAUSE,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    NOT_COPIED,
    POD_TEMPLATE_HASH,
    RESOURCES,
    REVISION,
    REVISION_HISTORY,
)

JSON = dict[str, Any]


class Deployments(Pods):
    """The deployment and ReplicaSet controllers, run synchronously after every write."""

    def _sync_deployment(self, namespace: str, name: str) -> None:
        dep = self._obj("deployments", namespace, name)
        if dep is None:
            return
        spec = dep.get("spec") or {}
        if not spec.get("paused"):
            for _ in range(3):
                if not self._rollout_step(dep):
                    break
        self._update_deployment_status(dep)

    def _rollout_step(self, dep: JSON) -> bool:
        """One pass of the deployment controller; True when something changed."""
        meta, spec = meta_of(dep), dep.get("spec") or {}
        namespace, uid = meta["namespace"], meta["uid"]
        template = spec.get("template") or {}
        desired = int(spec.get("replicas", 1))
        owned = self._owned("replicasets", namespace, uid)
        new_rs = next(
            (rs for rs in owned if templates_equal((rs.get("spec") or {}).get("template"), template)), None
        )
        changed = False
        max_rev = max((revision_of(rs) for rs in owned), default=0)
        if new_rs is None:
            new_rs = self._new_replica_set(dep, max_rev + 1)
            changed = True
        elif revision_of(new_rs) < max_rev:
            # Rollback to an older template: the old ReplicaSet becomes the newest revision.
            annotations = annotations_of(new_rs)
            history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
            history.append(str(revision_of(new_rs)))
            annotations[REVISION_HISTORY] = ",".join(history)
            annotations[REVISION] = str(max_rev + 1)
            self._copy_annotations(dep, new_rs)
            self._store_put(RESOURCES["replicasets"], new_rs)
            changed = True
        dep_annotations = annotations_of(dep)
        if dep_annotations.get(REVISION) != annotations_of(new_rs).get(REVISION):
            dep_annotations[REVISION] = annotations_of(new_rs)[REVISION]
            self._store_put(RESOURCES["deployments"], dep)
            changed = True
        if (
            annotations_of(new_rs).get(CHANGE_CAUSE) != dep_annotations.get(CHANGE_CAUSE)
            and dep_annotations.get(CHANGE_CAUSE) is not None
        ):
            self._copy_annotations(dep, new_rs)
            self._store_put(RESOURCES["replicasets"], new_rs)
        rs_uid = meta_of(new_rs)["uid"]
        old = [rs for rs in owned if meta_of(rs)["uid"] != rs_uid]
        old_active = [rs for rs in old if int((rs.get("spec") or {}).get("replicas", 0)) > 0]
        stalled = rs_uid in self._stalled_rs
        target = min(desired, 1) if stalled and old_active else desired
        changed |= self._scale_rs(dep, new_rs, target)
        new_pods = self._owned("pods", namespace, rs_uid)
        ready_new = sum(1 for p in new_pods if pod_ready(p))
        if old_active and not stalled and ready_new >= desired:
            for rs in old_active:
                changed |= self._scale_rs(dep, rs, 0)
        for rs in owned:
            changed |= self._sync_rs_pods(rs)
        for stored in [self._obj("replicasets", namespace, meta_of(r)["name"]) for r in owned]:
            if stored is not None:
                self._update_rs_status(stored)
        self._prune_history(dep)
        return changed

    def _prune_history(self, dep: JSON) -> None:
        meta, spec = meta_of(dep), dep.get("spec") or {}
        limit = int(spec.get("revisionHistoryLimit", 10))
        owned = self._owned("replicasets", meta["namespace"], meta["uid"])
        idle = sorted(
            (
                rs
                for rs in owned
                if int((rs.get("spec") or {}).get("replicas", 0)) == 0
                and not self._owned("pods", meta["namespace"], meta_of(rs)["uid"])
                and revision_of(rs) != revision_of(dep)
            ),
            key=revision_of,
        )
        for rs in idle[: max(len(idle) - limit, 0)]:
            self._store_delete(RESOURCES["replicasets"], rs)

    def _copy_annotations(self, dep: JSON, rs: JSON) -> None:
        annotations = annotations_of(rs)
        for key, value in (meta_of(dep).get("annotations") or {}).items():
            if key not in NOT_COPIED:
                annotations[key] = value
        annotations[DESIRED_REPLICAS] = str((dep.get("spec") or {}).get("replicas", 1))

    def _new_replica_set(self, dep: JSON, revision: int) -> JSON:
        meta, spec = meta_of(dep), dep.get("spec") or {}
        namespace = meta["namespace"]
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = template_hash(template)
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), POD_TEMPLATE_HASH: pod_hash}
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH: pod_hash}
        desired = int(spec.get("replicas", 1))
        surge = scaled(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", "25%"), desired, True
        )
        rs: JSON = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": namespace,
                "uid": self._next_uid(),
                "generation": 1,
                "creationTimestamp": timestamp(),
                "labels": dict(template_meta["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    DESIRED_REPLICAS: str(desired),
                    MAX_REPLICAS: str(desired + surge),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"replicas": 0, "minReadySeconds": 0, "selector": selector, "template": template},
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        self._copy_annotations(dep, rs)
        key = (namespace, meta["name"])
        if key in self._fail_next_rollout and any(self._owned("replicasets", namespace, meta["uid"])):
            self._fail_next_rollout.discard(key)
            rs_uid = rs["metadata"]["uid"]
            self._stalled_rs.add(rs_uid)
            self._schedule(self.rollout_delay, lambda: self._deadline_exceeded.add(rs_uid))
        self._store_put(RESOURCES["replicasets"], rs)
        return rs

    def _scale_rs(self, dep: JSON, rs: JSON, replicas: int) -> bool:
        spec = rs.setdefault("spec", {})
        current = int(spec.get("replicas", 0))
        if current == replicas:
            return False
        spec["replicas"] = replicas
        meta_of(rs)["generation"] = int(meta_of(rs).get("generation", 1)) + 1
        annotations_of(rs)[DESIRED_REPLICAS] = str((dep.get("spec") or {}).get("replicas", 1))
        self._store_put(RESOURCES["replicasets"], rs)
        direction = "up" if replicas > current else "down"
        self._event(
            dep,
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {meta_of(rs)['name']} from {current} to {replicas}",
            component="deployment-controller",
        )
        return True

    def _sync_rs_pods(self, rs: JSON) -> bool:
        meta = meta_of(rs)
        namespace, uid = meta["namespace"], meta["uid"]
        wanted = int((rs.get("spec") or {}).get("replicas", 0))
        pods = self._owned("pods", namespace, uid)
        changed = False
        if len(pods) > wanted:
            # Scale down: not-ready pods first, then the newest.
            victims = sorted(
                pods, key=lambda p: (pod_ready(p), meta_of(p)["creationTimestamp"], meta_of(p)["name"])
            )
            for pod in victims[: len(pods) - wanted]:
                self._delete_pod(pod, reason="scale down")
            changed = True
        for _ in range(wanted - len(pods)):
            self._create_pod_for(
                rs, "ReplicaSet", f"{meta['name']}-{self._suffix()}", uid in self._stalled_rs
            )
            changed = True
        return changed

    def _update_rs_status(self, rs: JSON) -> None:
        meta = meta_of(rs)
        pods = self._owned("pods", meta["namespace"], meta["uid"])
        ready = sum(1 for p in pods if pod_ready(p))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": meta.get("generation", 1),
        }
        if status != rs.get("status"):
            rs["status"] = status
            self._store_put(RESOURCES["replicasets"], rs)

    def _update_deployment_status(self, dep: JSON) -> None:
        meta, spec = meta_of(dep), dep.get("spec") or {}
        namespace = meta["namespace"]
        desired = int(spec.get("replicas", 1))
        owned = self._owned("replicasets", namespace, meta["uid"])
        new_rs = next(
            (
                rs
                for rs in owned
                if templates_equal((rs.get("spec") or {}).get("template"), spec.get("template"))
            ),
            None,
        )
        pods = [p for rs in owned for p in self._owned("pods", namespace, meta_of(rs)["uid"])]
        new_pods = self._owned("pods", namespace, meta_of(new_rs)["uid"]) if new_rs else []
        ready = sum(1 for p in pods if pod_ready(p))
        updated = len(new_pods)
        old_status = dep.get("status") or {}
        max_unavailable = scaled(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%"),
            desired,
            False,
        )
        complete = (
            new_rs is not None
            and updated == desired
            and len(pods) == desired
            and sum(1 for p in new_pods if pod_ready(p)) == desired
        )
        available = (
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if ready >= desired - max_unavailable
            else ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        )
        progressing = self._progressing(spec, new_rs, complete=complete)
        status_obj: JSON = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": _conditions(old_status, (("Available", available), ("Progressing", progressing))),
        }
        if desired - ready > 0:
            status_obj["unavailableReplicas"] = max(len(pods), desired) - ready
        for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if status_obj[key] == 0:
                del status_obj[key]
        if status_obj != old_status:
            dep["status"] = status_obj
            self._store_put(RESOURCES["deployments"], dep)

    def _progressing(self, spec: JSON, new_rs: JSON | None, *, complete: bool) -> tuple[str, str, str]:
        """The Progressing condition's (status, reason, message)."""
        rs_name = meta_of(new_rs)["name"] if new_rs else ""
        if spec.get("paused"):
            return ("Unknown", "DeploymentPaused", "Deployment is paused")
        if new_rs is not None and meta_of(new_rs)["uid"] in self._deadline_exceeded:
            return (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        if complete:
            return (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        return ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')


def _conditions(old_status: JSON, wanted: tuple[tuple[str, tuple[str, str, str]], ...]) -> list[JSON]:
    """Conditions as the controller writes them: times move only when the condition changes."""
    previous = {c.get("type"): c for c in old_status.get("conditions") or []}
    conditions = []
    for cond_type, (status, reason, message) in wanted:
        prev = previous.get(cond_type) or {}
        same = (
            prev.get("status") == status and prev.get("reason") == reason and prev.get("message") == message
        )
        conditions.append(
            {
                "type": cond_type,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": prev.get("lastUpdateTime") if same else timestamp(),
                "lastTransitionTime": prev.get("lastTransitionTime")
                if prev.get("status") == status
                else timestamp(),
            }
        )
    return conditions
