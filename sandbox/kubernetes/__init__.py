"""A fake Kubernetes API server that the real kubernetes-asyncio client talks to (see ``app``)."""

from sandbox.kubernetes.app import KubeSandbox
from sandbox.kubernetes.errors import ApiError
from sandbox.kubernetes.patches import PATCH_TYPES, json_merge_patch, json_patch, strategic_merge
from sandbox.kubernetes.resources import (
    CHANGE_CAUSE,
    DEFAULT_TOKEN,
    DEFAULT_USER,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    MIRROR_ANNOTATION,
    POD_TEMPLATE_HASH,
    RESOURCES,
    REVISION,
    REVISION_HISTORY,
    ResourceInfo,
)
from sandbox.kubernetes.selectors import (
    field_selector_matches,
    label_selector_matches,
    selector_matches,
    selector_to_string,
)
from sandbox.kubernetes.store import Access, ExecReply, RecordedRequest
from sandbox.kubernetes.validation import parse_quantity

__all__ = [
    "CHANGE_CAUSE",
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "DESIRED_REPLICAS",
    "MAX_REPLICAS",
    "MIRROR_ANNOTATION",
    "PATCH_TYPES",
    "POD_TEMPLATE_HASH",
    "RESOURCES",
    "REVISION",
    "REVISION_HISTORY",
    "Access",
    "ApiError",
    "ExecReply",
    "KubeSandbox",
    "RecordedRequest",
    "ResourceInfo",
    "field_selector_matches",
    "json_merge_patch",
    "json_patch",
    "label_selector_matches",
    "parse_quantity",
    "selector_matches",
    "selector_to_string",
    "strategic_merge",
]
