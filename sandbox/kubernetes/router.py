"""The HTTP side: authentication, request recording, routing, RBAC, injected faults, dry runs
and the dispatch of each verb."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sandbox.kubernetes.discovery import discovery
from sandbox.kubernetes.errors import ApiError, bad_request, invalid, not_found
from sandbox.kubernetes.objects import labels_of, truthy
from sandbox.kubernetes.pod_io import PodIO
from sandbox.kubernetes.resources import BY_GROUP_VERSION, SUBRESOURCES, ResourceInfo, Route
from sandbox.kubernetes.selectors import field_selector_matches, label_selector_matches
from sandbox.kubernetes.store import RECORD, Access, RecordedRequest
from sandbox.kubernetes.writes import Writes, scale_view

JSON = dict[str, Any]


class Router(Writes, PodIO):
    """Every request: recorded, authenticated, routed, authorized (RBAC and forbidden namespaces),
    maybe failed on purpose, then answered by verb."""

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body: Any = None
        raw = await request.read() if request.can_read_body else b""
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query={k: request.query.getall(k) for k in request.query},
            content_type=request.headers.get("Content-Type", ""),
            body=body,
        )
        self.requests.append(record)
        request[RECORD] = record
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            response: web.StreamResponse = await handler(request)
        except ApiError as err:
            response = web.json_response(err.status(), status=err.code)
        record.status = response.status
        self._notify()
        return response

    def _parse_route(self, path: str) -> Route:
        parts = [p for p in path.split("/") if p]
        if parts in (["version"], ["api"], ["apis"]):
            return Route(None, None, None, None, discovery="/".join(parts))
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        elif len(parts) == 2 and parts[0] == "apis":
            return Route(None, None, None, None, discovery="/".join(parts))
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return Route(None, None, None, None, discovery="/".join(parts))
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_GROUP_VERSION:
            namespace, rest = rest[1], rest[2:]
        info = BY_GROUP_VERSION.get((group, version, rest[0]))
        if info is None or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not info.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (info.plural, sub) not in SUBRESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Route(info, namespace, name, sub)

    @staticmethod
    def _verb(method: str, route: Route, request: web.Request) -> str:
        if method == "GET":
            if route.name is None:
                return "watch" if truthy(request.query.get("watch")) else "list"
            return "get"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, method.lower()
        )

    @staticmethod
    def _access(verb: str, route: Route) -> tuple[Access, ...]:
        """The checks RBAC makes for this request. An exec WebSocket upgrade is a GET, authorized
        as `get`; apiservers that also authorize the upgrade itself require `create` as well."""
        info = route.info
        assert info is not None
        resource = f"{info.plural}/{route.sub}" if route.sub else info.plural
        verbs = (verb, "create") if route.sub == "exec" else (verb,)
        return tuple(Access(v, info.group, resource, route.namespace) for v in verbs)

    def _authorize(self, access: tuple[Access, ...], route: Route) -> None:
        info = route.info
        assert info is not None
        refused = [
            a
            for a in access
            if (a.verb, a.resource) in self.denied
            or (route.namespace is not None and route.namespace in self.forbidden_namespaces)
        ]
        if not refused:
            return
        verb, resource = refused[0].verb, refused[0].resource
        subject = f'{info.qualified} "{route.name}"' if route.name else info.qualified
        scope = f'in the namespace "{route.namespace}"' if route.namespace else "at the cluster scope"
        raise ApiError(
            403,
            "Forbidden",
            f'{subject} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" '
            f'in API group "{info.group}" {scope}',
            {"name": route.name, "group": info.group, "kind": info.plural}
            if route.name
            else {"group": info.group, "kind": info.plural},
        )

    def _fault(self, method: str, route: Route) -> None:
        assert route.info is not None
        resource = f"{route.info.plural}/{route.sub}" if route.sub else route.info.plural
        for fault in self._faults:
            if fault.remaining > 0 and fault.method == method and fault.resource == resource:
                fault.remaining -= 1
                details = {"name": route.name, "group": route.info.group, "kind": route.info.plural}
                raise ApiError(fault.status, fault.reason, fault.message, details)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        route = self._parse_route(request.path)
        if route.discovery is not None:
            return web.json_response(discovery(route.discovery))
        info = route.info
        assert info is not None
        method = request.method
        verb = self._verb(method, route, request)
        access = self._access(verb, route)
        request[RECORD].access = access
        self._authorize(access, route)
        self._fault(method, route)
        dry_run = self._dry_run(request)
        if route.sub == "exec":
            return await self._exec_handler(request, route)
        if route.sub == "log":
            return self._log_handler(request, route)
        if method == "GET":
            return self._read(request, info, route, verb)
        body = await self._json_body(request)
        if method == "POST":
            return self._post(info, route, body, dry_run)
        if method == "PATCH" and route.name:
            return web.json_response(self._patch(request, info, route, body, dry_run))
        if method == "PUT" and route.name:
            return web.json_response(self._put(info, route, route.name, body, dry_run))
        if method == "DELETE" and route.name:
            return web.json_response(self._delete(info, route, request, body, dry_run))
        raise _method_not_allowed()

    def _read(self, request: web.Request, info: ResourceInfo, route: Route, verb: str) -> web.Response:
        """GET: a list (no watches), an object, or a Deployment's Scale."""
        if route.name is None:
            if verb == "watch":
                raise bad_request("watch is not supported by the sandbox")
            return web.json_response(self._list_response(info, route.namespace, request))
        obj = self._obj(info.plural, route.namespace, route.name)
        if obj is None:
            raise not_found(info, route.name)
        if route.sub == "scale":
            return web.json_response(scale_view(obj))
        return web.json_response(obj)

    def _post(self, info: ResourceInfo, route: Route, body: Any, dry_run: bool) -> web.Response:
        """POST: an eviction, or a create on the collection."""
        if route.sub == "eviction" and route.name:
            return self._evict(route.namespace or "", route.name, body, dry_run)
        if route.name is not None or not isinstance(body, dict):
            raise _method_not_allowed()
        created = self._create(info, route.namespace, body, dry_run=dry_run)
        return web.json_response(created, status=201)

    def _put(self, info: ResourceInfo, route: Route, name: str, body: Any, dry_run: bool) -> JSON:
        """PUT: replace the object (or its scale/status subresource) with the body."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        replacement = body
        return self._apply_write(
            info,
            route.namespace,
            name,
            route.sub,
            lambda _view: copy.deepcopy(replacement),
            dry_run=dry_run,
        )

    @staticmethod
    def _dry_run(request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for value in values:
            if value != "All":
                raise invalid(
                    ResourceInfo("", "DryRun", "", "v1", False),
                    "",
                    [("dryRun", f'Unsupported value: "{value}"')],
                )
        return bool(values)

    async def _json_body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from None

    def _list_response(self, info: ResourceInfo, namespace: str | None, request: web.Request) -> JSON:
        label_selector = request.query.get("labelSelector")
        field_selector = request.query.get("fieldSelector")
        items = []
        for obj in self._objects(info.plural, namespace):
            if not label_selector_matches(labels_of(obj), label_selector):
                continue
            if not field_selector_matches(obj, field_selector):
                continue
            item = copy.deepcopy(obj)
            item.pop("apiVersion", None)
            item.pop("kind", None)
            items.append(item)
        metadata: JSON = {"resourceVersion": str(self._state.rv)}
        limit = _limit(request.query.get("limit"))
        if limit and len(items) > limit:
            # A chunked list, as the apiserver answers: the rest through `continue` (not served
            # here: no client of ours follows it), and how many remain.
            metadata |= {"continue": f"sandbox-continue-{limit}", "remainingItemCount": len(items) - limit}
            items = items[:limit]
        return {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": metadata,
            "items": items,
        }


def _limit(raw: str | None) -> int:
    if raw is None:
        return 0
    if not raw.isdigit():
        raise bad_request(f"invalid limit {raw!r}: must be a non-negative integer")
    return int(raw)


def _method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )
