"""PATCH semantics: strategic merge patch, JSON merge patch (RFC 7386), JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.kubernetes.errors import ApiError, bad_request

JSON = dict[str, Any]


PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)

# Strategic-merge-patch merge keys of the lists the bot (and kubectl) patch.
SMP_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
}


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch for the fields used here: maps merge, keyed lists merge by key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result: JSON = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(
            ("$setElementOrder/", "$deleteFromPrimitiveList/")
        ):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result.get(key), value)
        elif isinstance(value, list) and key in SMP_MERGE_KEYS:
            result[key] = _merge_keyed_list(result.get(key) or [], value, SMP_MERGE_KEYS[key])
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_keyed_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise ApiError(422, "Invalid", f"map: {item!r} does not contain declared merge key: {key}", None)
        index = next(
            (
                i
                for i, existing in enumerate(merged)
                if isinstance(existing, dict) and existing.get(key) == item[key]
            ),
            None,
        )
        directive = item.get("$patch")
        if directive == "delete":
            if index is not None:
                del merged[index]
            continue
        if directive == "replace":
            replacement = {k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"}
            if index is None:
                merged.append(replacement)
            else:
                merged[index] = replacement
            continue
        if index is None:
            merged.append(strategic_merge({}, item))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JSON = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _json_patch_error(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch_error(message: str) -> ApiError:
    return ApiError(
        422, "Invalid", f"the server rejected our request due to an error in our request: {message}"
    )


def _resolve_parent(doc: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _json_patch_error(f"path {path!r} does not exist")
    return node, tokens[-1]


def _get_pointer(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _json_patch_error(f"path {path!r} does not exist")
    return node


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    result = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _json_patch_error(f"invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "test":
            if _get_pointer(result, path) != op.get("value"):
                raise _json_patch_error(f"testing value {path} failed")
            continue
        if kind in ("move", "copy"):
            value = copy.deepcopy(_get_pointer(result, op["from"]))
            if kind == "move":
                result = _remove(result, op["from"])
            result = _add(result, path, value)
            continue
        if kind == "remove":
            result = _remove(result, path)
        elif kind == "replace":
            _get_pointer(result, path)  # must exist
            result = _remove(result, path)
            result = _add(result, path, copy.deepcopy(op.get("value")))
        elif kind == "add":
            result = _add(result, path, copy.deepcopy(op.get("value")))
        else:
            raise _json_patch_error(f"unknown operation {kind!r}")
    return result


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _resolve_parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _json_patch_error(f"index out of range in {path!r}")
    else:
        raise _json_patch_error(f"path {path!r} does not exist")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return None
    parent, last = _resolve_parent(doc, tokens, path)
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise _json_patch_error(f"path {path!r} does not exist")
    return doc
