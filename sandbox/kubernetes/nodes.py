"""Nodes: cordoning (the unschedulable taint) and picking a schedulable node for a pod."""

from __future__ import annotations

from typing import Any

from sandbox.kubernetes.objects import meta_of, timestamp
from sandbox.kubernetes.resources import RESOURCES
from sandbox.kubernetes.store import ObjectStore

JSON = dict[str, Any]


class Nodes(ObjectStore):
    """Cordoned nodes carry the unschedulable taint; pods go round-robin to schedulable nodes."""

    def _sync_node_taints(self, node: JSON) -> None:
        spec = node.setdefault("spec", {})
        taints = [t for t in spec.get("taints") or [] if t.get("key") != "node.kubernetes.io/unschedulable"]
        if spec.get("unschedulable"):
            taints.append(
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": timestamp()}
            )
        if taints != (spec.get("taints") or []):
            if taints:
                spec["taints"] = taints
            else:
                spec.pop("taints", None)
            self._store_put(RESOURCES["nodes"], node)

    def _pick_node(self) -> str | None:
        nodes = [
            meta_of(n)["name"]
            for n in self._objects("nodes")
            if not (n.get("spec") or {}).get("unschedulable")
        ]
        if not nodes:
            return None
        choice = str(nodes[self._state.node_cursor % len(nodes)])
        self._state.node_cursor += 1
        return choice
