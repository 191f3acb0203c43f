"""Block Kit validation as Slack does it, with Slack's error strings and JSON pointers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from sandbox.slack.limits import MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS

JSON = dict[str, Any]

_BLOCK_TYPES: Final = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
_SINGLE_SELECTS: Final = frozenset(
    {"static_select", "external_select", "users_select", "conversations_select", "channels_select"}
)
_MULTI_SELECTS: Final = frozenset({"multi_" + s for s in _SINGLE_SELECTS})
_SELECTS: Final = _SINGLE_SELECTS | _MULTI_SELECTS
_PICKERS: Final = frozenset({"datepicker", "timepicker", "datetimepicker"})
_CHOICES: Final = frozenset({"checkboxes", "radio_buttons"})
_TEXT_INPUTS: Final = frozenset(
    {
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "file_input",
    }
)
_ACTIONS_ELEMENTS: Final = (
    frozenset({"button", "overflow", "workflow_button"}) | _SELECTS | _PICKERS | _CHOICES
)
_ACCESSORY_ELEMENTS: Final = _ACTIONS_ELEMENTS | {"image"}
_INPUT_ELEMENTS: Final = _SELECTS | _PICKERS | _CHOICES | _TEXT_INPUTS
_INTERACTIVE_ELEMENTS: Final = _ACTIONS_ELEMENTS | _TEXT_INPUTS


class _Validator:
    """Collects Slack-style error strings: ``<reason> [json-pointer:/blocks/0/text/text]``."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, reason: str, ptr: str) -> None:
        self.errors.append(f"{reason} [json-pointer:{ptr}]")

    # -- primitives ---------------------------------------------------------------------------

    def string(
        self, obj: Mapping[str, Any], key: str, ptr: str, limit: int, *, required: bool = False
    ) -> None:
        value = obj.get(key)
        where = f"{ptr}/{key}"
        if value is None:
            if required:
                self.err(f"missing required field: {key}", ptr)
            return
        if not isinstance(value, str):
            self.err("must be a string", where)
        elif required and value == "":
            self.err("must be more than 0 characters", where)
        elif len(value) > limit:
            self.err(f"must be less than {limit + 1} characters", where)

    def items(self, value: Any, ptr: str, limit: int, *, minimum: int = 1) -> list[Any]:
        if not isinstance(value, list):
            self.err("must be an array", ptr)
            return []
        if len(value) < minimum:
            self.err(f"must provide at least {minimum} item{'s' if minimum != 1 else ''}", ptr)
        if len(value) > limit:
            self.err(f"must be less than {limit + 1} items", ptr)
        return value

    def text(
        self,
        value: Any,
        ptr: str,
        limit: int,
        *,
        plain_only: bool = False,
        required: bool = True,
        key: str = "text",
    ) -> None:
        if value is None:
            if required:
                parent, _, _ = ptr.rpartition("/")
                self.err(f"missing required field: {key}", parent or "/")
            return
        if not isinstance(value, dict):
            self.err("must provide an object", ptr)
            return
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        kind = value.get("type")
        if kind not in allowed:
            self.err(f"must be one of: {', '.join(allowed)}", f"{ptr}/type")
        text = value.get("text")
        if text is None:
            self.err("missing required field: text", ptr)
        elif not isinstance(text, str):
            self.err("must be a string", f"{ptr}/text")
        elif text == "":
            self.err("must be more than 0 characters", f"{ptr}/text")
        elif len(text) > limit:
            self.err(f"must be less than {limit + 1} characters", f"{ptr}/text")

    def boolean(self, obj: Mapping[str, Any], key: str, ptr: str) -> None:
        if key in obj and not isinstance(obj[key], bool):
            self.err("must be a boolean", f"{ptr}/{key}")

    # -- composition objects ------------------------------------------------------------------

    def confirm(self, value: Any, ptr: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.err("must provide an object", ptr)
            return
        self.text(value.get("title"), f"{ptr}/title", 100, plain_only=True, key="title")
        self.text(value.get("text"), f"{ptr}/text", 300)
        self.text(value.get("confirm"), f"{ptr}/confirm", 30, plain_only=True, key="confirm")
        self.text(value.get("deny"), f"{ptr}/deny", 30, plain_only=True, key="deny")
        style = value.get("style")
        if style is not None and style not in ("primary", "danger"):
            self.err("must be one of: primary, danger", f"{ptr}/style")

    def option(self, value: Any, ptr: str, *, mrkdwn_ok: bool, url_ok: bool = False) -> None:
        if not isinstance(value, dict):
            self.err("must provide an object", ptr)
            return
        self.text(value.get("text"), f"{ptr}/text", 75, plain_only=not mrkdwn_ok)
        self.string(value, "value", ptr, 150, required=True)
        self.text(value.get("description"), f"{ptr}/description", 75, required=False)
        if url_ok:
            self.string(value, "url", ptr, 3000)
        elif "url" in value:
            self.err("url is only allowed on overflow menu options", f"{ptr}/url")

    # -- elements -----------------------------------------------------------------------------

    def image_element(self, el: Mapping[str, Any], ptr: str) -> None:
        has_url = "image_url" in el
        has_file = "slack_file" in el
        if has_url == has_file:
            self.err("must provide exactly one of image_url or slack_file", ptr)
        self.string(el, "image_url", ptr, 3000)
        self.string(el, "alt_text", ptr, 2000, required=True)

    def element(self, el: Any, ptr: str, allowed: frozenset[str], action_ids: set[str]) -> None:
        if not isinstance(el, dict):
            self.err("must provide an object", ptr)
            return
        kind = el.get("type")
        if not isinstance(kind, str) or kind not in allowed:
            self.err(f"element type {kind!r} is not allowed here; allowed: {', '.join(sorted(allowed))}", ptr)
            return
        if kind == "image":
            self.image_element(el, ptr)
            return
        self.unique_id(el, "action_id", ptr, action_ids, "is already used in this block")
        self.confirm(el.get("confirm"), f"{ptr}/confirm")
        if kind == "button":
            self.button(el, ptr)
        elif kind == "workflow_button":
            self.text(el.get("text"), f"{ptr}/text", 75, plain_only=True)
            if not isinstance(el.get("workflow"), dict):
                self.err("missing required field: workflow", ptr)
        elif kind in _SELECTS:
            self.select(el, kind, ptr)
        elif kind == "overflow" or kind in _CHOICES:
            self.option_list(el, kind, ptr)
        elif kind in _PICKERS:
            self.text(el.get("placeholder"), f"{ptr}/placeholder", 150, plain_only=True, required=False)
        elif kind in _TEXT_INPUTS:
            self.text_input(el, kind, ptr)

    def unique_id(self, obj: Mapping[str, Any], key: str, ptr: str, seen: set[str], problem: str) -> None:
        """A ``block_id`` / ``action_id``: a string of at most 255 characters, unique in its scope."""
        value = obj.get(key)
        if value is None:
            return
        self.string(obj, key, ptr, 255)
        if isinstance(value, str):
            if value in seen:
                self.err(f"{key} {value!r} {problem}", f"{ptr}/{key}")
            seen.add(value)

    def button(self, el: Mapping[str, Any], ptr: str) -> None:
        self.text(el.get("text"), f"{ptr}/text", 75, plain_only=True)
        self.string(el, "value", ptr, 2000)
        self.string(el, "url", ptr, 3000)
        self.string(el, "accessibility_label", ptr, 75)
        style = el.get("style")
        if style is not None and style not in ("primary", "danger"):
            self.err("must be one of: primary, danger", f"{ptr}/style")

    def option_list(self, el: Mapping[str, Any], kind: str, ptr: str) -> None:
        """An overflow menu (up to 5 options, which may link) or checkboxes / radio buttons (up to 10)."""
        if kind == "overflow":
            for i, opt in enumerate(self.items(el.get("options"), f"{ptr}/options", 5)):
                self.option(opt, f"{ptr}/options/{i}", mrkdwn_ok=False, url_ok=True)
        else:
            for i, opt in enumerate(self.items(el.get("options"), f"{ptr}/options", 10)):
                self.option(opt, f"{ptr}/options/{i}", mrkdwn_ok=True)

    def select(self, el: Mapping[str, Any], kind: str, ptr: str) -> None:
        self.text(el.get("placeholder"), f"{ptr}/placeholder", 150, plain_only=True, required=False)
        if kind in ("static_select", "multi_static_select"):
            self.select_options(el, ptr)
        if kind in _MULTI_SELECTS and "max_selected_items" in el:
            mx = el["max_selected_items"]
            if not isinstance(mx, int) or isinstance(mx, bool) or mx < 1:
                self.err("must be an integer of at least 1", f"{ptr}/max_selected_items")

    def text_input(self, el: Mapping[str, Any], kind: str, ptr: str) -> None:
        self.text(el.get("placeholder"), f"{ptr}/placeholder", 150, plain_only=True, required=False)
        if kind != "plain_text_input":
            return
        for key in ("min_length", "max_length"):
            if key in el:
                n = el[key]
                if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 3000:
                    self.err("must be an integer between 0 and 3000", f"{ptr}/{key}")

    def select_options(self, el: Mapping[str, Any], ptr: str) -> None:
        has_options = "options" in el
        has_groups = "option_groups" in el
        if has_options and has_groups:
            self.err("must provide only one of options or option_groups", ptr)
        elif not has_options and not has_groups:
            self.err("missing required field: options", ptr)
        if has_options:
            for i, opt in enumerate(self.items(el.get("options"), f"{ptr}/options", 100)):
                self.option(opt, f"{ptr}/options/{i}", mrkdwn_ok=False)
        if has_groups:
            for g, group in enumerate(self.items(el.get("option_groups"), f"{ptr}/option_groups", 100)):
                gptr = f"{ptr}/option_groups/{g}"
                if not isinstance(group, dict):
                    self.err("must provide an object", gptr)
                    continue
                self.text(group.get("label"), f"{gptr}/label", 75, plain_only=True, key="label")
                for i, opt in enumerate(self.items(group.get("options"), f"{gptr}/options", 100)):
                    self.option(opt, f"{gptr}/options/{i}", mrkdwn_ok=False)

    # -- blocks -------------------------------------------------------------------------------

    def blocks(self, blocks: Any, ptr: str, max_blocks: int) -> None:
        if not isinstance(blocks, list):
            self.err("must be an array", ptr)
            return
        if len(blocks) > max_blocks:
            self.err(f"must be less than {max_blocks + 1} items", ptr)
        block_ids: set[str] = set()
        for i, block in enumerate(blocks):
            self.block(block, f"{ptr}/{i}", block_ids)

    def block(self, block: Any, ptr: str, block_ids: set[str]) -> None:
        if not isinstance(block, dict):
            self.err("must provide an object", ptr)
            return
        kind = block.get("type")
        if not isinstance(kind, str) or kind not in _BLOCK_TYPES:
            self.err(f"unknown block type {kind!r}; expected one of: {', '.join(sorted(_BLOCK_TYPES))}", ptr)
            return
        self.unique_id(block, "block_id", ptr, block_ids, "is already used; block_ids must be unique")
        _BLOCK_CHECKS[kind](self, block, ptr)

    def section_block(self, block: Mapping[str, Any], ptr: str) -> None:
        if "text" not in block and "fields" not in block:
            self.err("must provide text or fields", ptr)
        if "text" in block:
            self.text(block["text"], f"{ptr}/text", 3000)
        if "fields" in block:
            for i, fld in enumerate(self.items(block["fields"], f"{ptr}/fields", 10)):
                self.text(fld, f"{ptr}/fields/{i}", 2000)
        if "accessory" in block:
            self.element(block["accessory"], f"{ptr}/accessory", _ACCESSORY_ELEMENTS, set())
        self.boolean(block, "expand", ptr)

    def header_block(self, block: Mapping[str, Any], ptr: str) -> None:
        self.text(block.get("text"), f"{ptr}/text", 150, plain_only=True)

    def context_block(self, block: Mapping[str, Any], ptr: str) -> None:
        for i, el in enumerate(self.items(block.get("elements"), f"{ptr}/elements", 10)):
            eptr = f"{ptr}/elements/{i}"
            if isinstance(el, dict) and el.get("type") == "image":
                self.image_element(el, eptr)
            else:
                self.text(el, eptr, 3000)

    def actions_block(self, block: Mapping[str, Any], ptr: str) -> None:
        action_ids: set[str] = set()
        for i, el in enumerate(self.items(block.get("elements"), f"{ptr}/elements", 25)):
            self.element(el, f"{ptr}/elements/{i}", _ACTIONS_ELEMENTS, action_ids)

    def image_block(self, block: Mapping[str, Any], ptr: str) -> None:
        self.image_element(block, ptr)
        self.text(block.get("title"), f"{ptr}/title", 2000, plain_only=True, required=False)

    def markdown_block(self, block: Mapping[str, Any], ptr: str) -> None:
        self.string(block, "text", ptr, 12000, required=True)

    def rich_text_block(self, block: Mapping[str, Any], ptr: str) -> None:
        for i, el in enumerate(self.items(block.get("elements"), f"{ptr}/elements", 10_000, minimum=0)):
            if not isinstance(el, dict) or not isinstance(el.get("type"), str):
                self.err("must provide an object with a type", f"{ptr}/elements/{i}")

    def input_block(self, block: Mapping[str, Any], ptr: str) -> None:
        self.text(block.get("label"), f"{ptr}/label", 2000, plain_only=True, key="label")
        self.text(block.get("hint"), f"{ptr}/hint", 2000, plain_only=True, required=False)
        if "element" not in block:
            self.err("missing required field: element", ptr)
        else:
            self.element(block["element"], f"{ptr}/element", _INPUT_ELEMENTS, set())
        self.boolean(block, "optional", ptr)
        self.boolean(block, "dispatch_action", ptr)

    def file_block(self, block: Mapping[str, Any], ptr: str) -> None:
        self.string(block, "external_id", ptr, 255, required=True)
        self.string(block, "source", ptr, 255, required=True)

    def video_block(self, block: Mapping[str, Any], ptr: str) -> None:
        for key in ("alt_text", "thumbnail_url", "video_url"):
            self.string(block, key, ptr, 3000, required=True)
        self.text(block.get("title"), f"{ptr}/title", 200, plain_only=True, key="title")

    def table_block(self, block: Mapping[str, Any], ptr: str) -> None:
        self.items(block.get("rows"), f"{ptr}/rows", 100)


_BlockCheck = Callable[[_Validator, Mapping[str, Any], str], None]

#: What each block type checks beyond ``type`` and ``block_id`` (a divider has nothing more).
_BLOCK_CHECKS: Final[Mapping[str, _BlockCheck]] = {
    "actions": _Validator.actions_block,
    "context": _Validator.context_block,
    "file": _Validator.file_block,
    "header": _Validator.header_block,
    "image": _Validator.image_block,
    "input": _Validator.input_block,
    "markdown": _Validator.markdown_block,
    "rich_text": _Validator.rich_text_block,
    "section": _Validator.section_block,
    "table": _Validator.table_block,
    "video": _Validator.video_block,
    "divider": lambda _v, _block, _ptr: None,
}


def validate_message_blocks(blocks: Any, *, pointer: str = "/blocks") -> list[str]:
    """Validate a message's ``blocks`` as Slack does; returns Slack-style error strings."""
    v = _Validator()
    v.blocks(blocks, pointer, MAX_MESSAGE_BLOCKS)
    return v.errors


def validate_view(view: Any) -> list[str]:
    """Validate a modal or Home tab view payload; returns Slack-style error strings."""
    v = _Validator()
    if not isinstance(view, dict):
        v.err("must provide an object", "/view")
        return v.errors
    kind = view.get("type")
    if kind not in ("modal", "home"):
        v.err("must be one of: modal, home", "/view/type")
    if kind == "modal":
        v.text(view.get("title"), "/view/title", 24, plain_only=True, key="title")
        v.text(view.get("submit"), "/view/submit", 24, plain_only=True, required=False)
        v.text(view.get("close"), "/view/close", 24, plain_only=True, required=False)
    if "blocks" not in view:
        v.err("missing required field: blocks", "/view")
    else:
        v.blocks(view["blocks"], "/view/blocks", MAX_VIEW_BLOCKS)
    v.string(view, "private_metadata", "/view", 3000)
    v.string(view, "callback_id", "/view", 255)
    v.string(view, "external_id", "/view", 255)
    blocks = view.get("blocks")
    has_input = isinstance(blocks, list) and any(
        isinstance(b, dict) and b.get("type") == "input" for b in blocks
    )
    if kind == "modal" and has_input and view.get("submit") is None:
        v.err("submit is required when the view contains input blocks", "/view/submit")
    return v.errors


def interactive_elements(block: Mapping[str, Any]) -> Iterator[JSON]:
    kind = block.get("type")
    candidates: list[Any] = []
    if kind == "actions" and isinstance(block.get("elements"), list):
        candidates = list(block["elements"])
    elif kind == "section":
        candidates = [block.get("accessory")]
    elif kind == "input":
        candidates = [block.get("element")]
    for el in candidates:
        if isinstance(el, dict) and el.get("type") in _INTERACTIVE_ELEMENTS:
            yield el
