"""Writes through the API: create, update/patch (also of the scale and status subresources),
delete and eviction, and the controllers that react to them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sandbox.kubernetes.deployments import Deployments
from sandbox.kubernetes.disruption import DisruptionBudgets
from sandbox.kubernetes.errors import ApiError, bad_request, conflict, invalid, not_found
from sandbox.kubernetes.objects import meta_of, timestamp
from sandbox.kubernetes.patches import PATCH_TYPES, json_merge_patch, json_patch, strategic_merge
from sandbox.kubernetes.resources import GENERATION, RESOURCES, ResourceInfo, Route
from sandbox.kubernetes.selectors import selector_to_string
from sandbox.kubernetes.validation import check_replicas, validate

JSON = dict[str, Any]


class Writes(Deployments, DisruptionBudgets):
    """Create, update (PUT and the three PATCH types, also on ``scale`` and ``status``) and delete,
    with the apiserver's defaulting, validation, resourceVersion/generation rules and dry runs;
    controllers run after every write."""

    def create(self, obj: JSON) -> JSON:
        """Store an object as if created through the API (server fields filled, controllers run)."""
        info = self._info_for(obj)
        meta = meta_of(obj)
        created = self._create(info, meta.get("namespace") if info.namespaced else None, obj, dry_run=False)
        self._settle()
        return created

    def modify(self, resource: str, namespace: str | None, name: str, mutate: Callable[[JSON], None]) -> JSON:
        """Change an object as another actor would (bumps resourceVersion/generation, runs controllers)."""
        info = RESOURCES[resource]
        current = self._obj(resource, namespace, name)
        if current is None:
            raise not_found(info, name)
        updated = copy.deepcopy(current)
        mutate(updated)
        stored = self._persist_update(info, current, updated, keep_status=False)
        self._after_write(info, current, stored)
        return copy.deepcopy(stored)

    def set_pdb(self, namespace: str, name: str, **spec: Any) -> JSON:
        """Replace fields of a PDB spec (e.g. maxUnavailable=2) and recompute its status."""

        def mutate(pdb: JSON) -> None:
            pdb_spec = pdb.setdefault("spec", {})
            if "minAvailable" in spec or "maxUnavailable" in spec:
                pdb_spec.pop("minAvailable", None)
                pdb_spec.pop("maxUnavailable", None)
            pdb_spec.update(spec)

        return self.modify("poddisruptionbudgets", namespace, name, mutate)

    def _create(self, info: ResourceInfo, namespace: str | None, body: JSON, *, dry_run: bool) -> JSON:
        obj = copy.deepcopy(body)
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind
        meta = meta_of(obj)
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = f"{meta['generateName']}{self._suffix()}"
            meta["name"] = name
        if not isinstance(name, str) or not name:
            raise invalid(info, "", [("metadata.name", "Required value: name or generateName is required")])
        if info.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            if self._obj("namespaces", None, namespace or "") is None:
                raise not_found(RESOURCES["namespaces"], namespace or "")
        if self._obj(info.plural, namespace, name) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{info.qualified} "{name}" already exists',
                {"name": name, "group": info.group, "kind": info.plural},
            )
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        validate(info, obj, creating=True)
        meta["uid"] = self._next_uid()
        meta["creationTimestamp"] = meta.get("creationTimestamp") or timestamp()
        if info.plural in GENERATION:
            meta["generation"] = 1
        if not meta.get("labels"):
            meta.pop("labels", None)
        self._default(info, obj)
        if dry_run:
            meta.pop("resourceVersion", None)
            return obj
        self._store_put(info, obj)
        snapshot = copy.deepcopy(obj)
        self._after_write(info, None, obj)
        return snapshot

    def _persist_update(self, info: ResourceInfo, current: JSON, updated: JSON, *, keep_status: bool) -> JSON:
        meta, old_meta = meta_of(updated), meta_of(current)
        for key in ("uid", "creationTimestamp", "name", "namespace"):
            if key in old_meta:
                meta[key] = old_meta[key]
        if info.plural in GENERATION:
            meta["generation"] = old_meta.get("generation", 1)
        if keep_status and info.has_status and "status" in current:
            updated["status"] = copy.deepcopy(current["status"])
        if keep_status and info.has_status and "status" not in current:
            updated.pop("status", None)
        if updated.get("spec") != current.get("spec") and info.plural in GENERATION:
            meta["generation"] = int(meta["generation"]) + 1
        self._store_put(info, updated)
        return updated

    def _apply_write(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        sub: str | None,
        change: Callable[[JSON], JSON],
        *,
        dry_run: bool,
    ) -> JSON:
        """PATCH/PUT: `change` maps the current view (object or Scale) to the desired one."""
        current = self._obj(info.plural, namespace, name)
        if current is None:
            raise not_found(info, name)
        view = scale_view(current) if sub == "scale" else copy.deepcopy(current)
        desired = change(copy.deepcopy(view))
        if not isinstance(desired, dict):
            raise bad_request("the patched object is not a JSON object")
        new_meta = desired.get("metadata") or {}
        if new_meta.get("resourceVersion") not in (None, meta_of(view).get("resourceVersion")):
            raise conflict(info, name)
        for key in ("name", "namespace", "uid"):
            if key in new_meta and new_meta[key] != meta_of(view).get(key):
                raise invalid(info, name, [(f"metadata.{key}", "Invalid value: field is immutable")])
        if sub == "scale":
            replicas = (desired.get("spec") or {}).get("replicas")
            check_replicas(RESOURCES["deployments"], name, replicas, "spec.replicas", kind="Scale")
            updated = copy.deepcopy(current)
            updated.setdefault("spec", {})["replicas"] = replicas
        elif sub == "status":
            updated = copy.deepcopy(current)
            updated["status"] = desired.get("status")
        else:
            updated = desired
            updated["apiVersion"], updated["kind"] = info.api_version, info.kind
            validate(info, updated, creating=False)
        if dry_run:
            preview = copy.deepcopy(updated)
            if info.has_status and sub != "status":
                preview["status"] = copy.deepcopy(current.get("status"))
            if preview.get("spec") != current.get("spec") and info.plural in GENERATION:
                meta_of(preview)["generation"] = int(meta_of(current).get("generation", 1)) + 1
            return scale_view(preview) if sub == "scale" else preview
        stored = self._persist_update(info, current, updated, keep_status=sub != "status")
        # The answer is the object as written; controllers react afterwards (as on a real cluster).
        snapshot = copy.deepcopy(stored)
        self._after_write(info, current, stored)
        return scale_view(snapshot) if sub == "scale" else snapshot

    def _default(self, info: ResourceInfo, obj: JSON) -> None:
        if info.plural == "jobs":
            spec = obj.setdefault("spec", {})
            uid = meta_of(obj)["uid"]
            name = meta_of(obj)["name"]
            labels = {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            }
            spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
            template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
            template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            obj["status"] = {}
        if info.plural == "deployments":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            )
            obj.setdefault("status", {})
        if info.plural == "pods":
            obj.setdefault("status", {"phase": "Pending"})

    # ------------------------------------------------------------------ controllers

    def _after_write(self, info: ResourceInfo, old: JSON | None, new: JSON) -> None:
        if info.plural == "deployments":
            self._sync_deployment(meta_of(new)["namespace"], meta_of(new)["name"])
        elif info.plural == "nodes":
            self._sync_node_taints(new)
        elif info.plural == "jobs" and old is None:
            self._start_job(new)
        self._settle()

    def _settle(self) -> None:
        self._schedule_pending()
        for dep in self._objects("deployments"):
            self._sync_deployment(meta_of(dep)["namespace"], meta_of(dep)["name"])
        self._update_pdbs()

    # ------------------------------------------------------------------ patch and delete

    def _patch(
        self, request: web.Request, info: ResourceInfo, route: Route, body: Any, dry_run: bool
    ) -> JSON:
        content_type = request.content_type
        if content_type not in PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(PATCH_TYPES)}, application/apply-patch+yaml",
            )
        field_manager = request.query.get("fieldManager")
        if field_manager is not None and (len(field_manager) > 128 or not field_manager.isprintable()):
            raise invalid(
                info,
                route.name or "",
                [("fieldManager", "Invalid value: must be <= 128 printable characters")],
            )
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise bad_request("json patch must be a list of operations")

            def change(view: JSON) -> JSON:
                result = json_patch(view, body)
                assert isinstance(result, dict)
                return result
        else:
            if not isinstance(body, dict):
                raise bad_request("the body of the request is not a JSON object")
            merge = strategic_merge if content_type.startswith("application/strategic") else json_merge_patch

            def change(view: JSON) -> JSON:
                result = merge(view, body)
                assert isinstance(result, dict)
                return result

        assert route.name is not None
        return self._apply_write(info, route.namespace, route.name, route.sub, change, dry_run=dry_run)

    def _delete(
        self, info: ResourceInfo, route: Route, request: web.Request, body: Any, dry_run: bool
    ) -> JSON:
        assert route.name is not None
        obj = self._obj(info.plural, route.namespace, route.name)
        if obj is None:
            raise not_found(info, route.name)
        options = body if isinstance(body, dict) else {}
        if "All" in (options.get("dryRun") or []):
            dry_run = True
        preconditions = options.get("preconditions") or {}
        meta = meta_of(obj)
        if preconditions.get("uid") not in (None, meta["uid"]):
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {meta['uid']}",
                {"name": route.name, "group": info.group, "kind": info.plural},
            )
        if preconditions.get("resourceVersion") not in (None, meta["resourceVersion"]):
            raise conflict(info, route.name)
        result = copy.deepcopy(obj)
        grace = request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        if info.plural == "pods":
            result["metadata"]["deletionTimestamp"] = timestamp()
            result["metadata"]["deletionGracePeriodSeconds"] = int(
                grace
                if grace is not None
                else (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            )
        if dry_run:
            return result
        if info.plural == "pods":
            self._delete_pod(obj, reason="delete")
        else:
            self._store_delete(info, obj)
        self._settle()
        return result


def scale_view(dep: JSON) -> JSON:
    """A Deployment as its ``autoscaling/v1`` Scale subresource."""
    meta = meta_of(dep)
    status = dep.get("status") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": (dep.get("spec") or {}).get("replicas", 1)},
        "status": {
            "replicas": status.get("replicas", 0),
            "selector": selector_to_string((dep.get("spec") or {}).get("selector")),
        },
    }
