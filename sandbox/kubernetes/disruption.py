"""PodDisruptionBudgets: their status, and whether an eviction may go ahead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.kubernetes.errors import ApiError, bad_request, not_found
from sandbox.kubernetes.objects import controller_ref, labels_of, meta_of, pod_ready, scaled, timestamp
from sandbox.kubernetes.pods import Pods
from sandbox.kubernetes.resources import RESOURCES
from sandbox.kubernetes.selectors import selector_matches

JSON = dict[str, Any]


@dataclass(slots=True)
class Budget:
    """A PodDisruptionBudget's arithmetic: healthy, desired and expected pods, disruptions allowed."""

    pdb: JSON
    healthy: int
    desired: int
    expected: int
    allowed: int


class DisruptionBudgets(Pods):
    """PodDisruptionBudget status, recomputed on every pod change, and the eviction check."""

    def _budgets_for(self, pod: JSON) -> list[JSON]:
        namespace = meta_of(pod)["namespace"]
        return [
            pdb
            for pdb in self._objects("poddisruptionbudgets", namespace)
            if selector_matches((pdb.get("spec") or {}).get("selector"), labels_of(pod))
        ]

    def _budget(self, pdb: JSON) -> Budget:
        meta, spec = meta_of(pdb), pdb.get("spec") or {}
        pods = [
            p
            for p in self._objects("pods", meta["namespace"])
            if selector_matches(spec.get("selector"), labels_of(p))
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        expected = 0
        seen: set[str] = set()
        for pod in pods:
            ref = controller_ref(pod)
            scale_owner = self._scale_owner(meta["namespace"], ref)
            if scale_owner is None:
                expected += 1
            elif meta_of(scale_owner)["uid"] not in seen:
                seen.add(meta_of(scale_owner)["uid"])
                expected += int((scale_owner.get("spec") or {}).get("replicas", 1))
        healthy = sum(1 for p in pods if pod_ready(p))
        if "minAvailable" in spec:
            desired = scaled(spec["minAvailable"], expected, True)
        elif "maxUnavailable" in spec:
            desired = max(expected - scaled(spec["maxUnavailable"], expected, True), 0)
        else:
            desired = expected
        return Budget(pdb, healthy, desired, expected, max(healthy - desired, 0))

    def _scale_owner(self, namespace: str, ref: JSON | None) -> JSON | None:
        if not ref or ref.get("kind") != "ReplicaSet":
            return None
        rs = self._obj("replicasets", namespace, ref.get("name", ""))
        if rs is None:
            return None
        dep_ref = controller_ref(rs)
        if dep_ref and dep_ref.get("kind") == "Deployment":
            return self._obj("deployments", namespace, dep_ref.get("name", "")) or rs
        return rs

    def _update_pdbs(self) -> None:
        for pdb in self._objects("poddisruptionbudgets"):
            budget = self._budget(pdb)
            old = pdb.get("status") or {}
            allowed = budget.allowed > 0
            prev_cond: JSON = next(iter(old.get("conditions") or []), {})
            cond_status = "True" if allowed else "False"
            status = {
                "observedGeneration": meta_of(pdb).get("generation", 1),
                "disruptionsAllowed": budget.allowed,
                "currentHealthy": budget.healthy,
                "desiredHealthy": budget.desired,
                "expectedPods": budget.expected,
                "conditions": [
                    {
                        "type": "DisruptionAllowed",
                        "status": cond_status,
                        "reason": "SufficientPods" if allowed else "InsufficientPods",
                        "message": "",
                        "observedGeneration": meta_of(pdb).get("generation", 1),
                        "lastTransitionTime": prev_cond.get("lastTransitionTime")
                        if prev_cond.get("status") == cond_status
                        else timestamp(),
                    }
                ],
            }
            if status != old:
                pdb["status"] = status
                self._store_put(RESOURCES["poddisruptionbudgets"], pdb)

    # ------------------------------------------------------------------ eviction

    def _evict(self, namespace: str, name: str, body: Any, dry_run: bool) -> web.Response:
        info = RESOURCES["pods"]
        if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
            raise bad_request("the body of the request must be an Eviction")
        if (body.get("metadata") or {}).get("name") not in (None, name):
            raise bad_request(f"name in URL does not match name in Eviction object: {name}")
        pod = self._obj("pods", namespace, name)
        if pod is None:
            raise not_found(info, name)
        options = body.get("deleteOptions") or {}
        if "All" in (options.get("dryRun") or []):
            dry_run = True
        budgets = self._budgets_for(pod)
        phase = (pod.get("status") or {}).get("phase")
        if len(budgets) > 1:
            raise ApiError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            )
        if budgets and phase not in ("Pending", "Succeeded", "Failed"):
            budget = self._budget(budgets[0])
            healthy_pod = pod_ready(pod)
            blocked = budget.allowed <= 0 if healthy_pod else budget.healthy < budget.desired
            if blocked:
                pdb_name = meta_of(budgets[0])["name"]
                raise ApiError(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    {
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {pdb_name} needs {budget.desired} healthy pods "
                                f"and has {budget.healthy} currently",
                            }
                        ]
                    },
                )
        if not dry_run:
            self._delete_pod(pod, reason="eviction")
            self._settle()
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
            status=201,
        )
