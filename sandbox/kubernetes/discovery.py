"""Discovery documents: ``/version``, ``/api``, ``/apis`` and each group version's resource list."""

from __future__ import annotations

from typing import Any

from sandbox.kubernetes.resources import RESOURCES, SUBRESOURCES

JSON = dict[str, Any]


def discovery(path: str) -> JSON:
    if path == "version":
        return {
            "major": "1",
            "minor": "34",
            "gitVersion": "v1.34.0-sandbox",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    if path == "api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        }
    # One entry per group with all its versions (autoscaling serves v1 scales and v2 HPAs).
    groups: dict[str, set[str]] = {"autoscaling": {"v1"}}
    for r in RESOURCES.values():
        if r.group:
            groups.setdefault(r.group, set()).add(r.version)
    if path == "apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [
                        {"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs, reverse=True)
                    ],
                    "preferredVersion": {"groupVersion": f"{g}/{max(vs)}", "version": max(vs)},
                }
                for g, vs in sorted(groups.items())
            ],
        }
    parts = path.split("/")
    group_version = "v1" if parts[0] == "api" else "/".join(parts[1:3])
    resources = []
    for r in RESOURCES.values():
        if r.api_version != group_version:
            continue
        resources.append(
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update"],
            }
        )
        for plural, sub in sorted(SUBRESOURCES):
            if plural == r.plural:
                kind = {"scale": "Scale", "eviction": "Eviction"}.get(sub, r.kind)
                resources.append(
                    {
                        "name": f"{plural}/{sub}",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": kind,
                        "verbs": ["create"] if sub in ("eviction", "exec") else ["get", "patch", "update"],
                    }
                )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }
