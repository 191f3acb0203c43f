"""Remediation from Slack: `/incident run`, `/incident killswitch` and the approve/reject
buttons. Thin glue over bot.flows.remediation: a button carries only the run's opaque token, the
flow reloads the run and re-checks everything on the server; a refusal is answered ephemerally
with its reason. What only the requester may see (set env: the values before and after) is in
the ephemeral answer to `/incident run`, and nowhere else.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from bot.core.actions import HOST_ACTIONS, PARAMS_BY_ACTION, ActionName, ActionParams, action_params
from bot.core.blockkit import MAX_SECTION_TEXT, escape
from bot.core.errors import UserError
from bot.core.runs import ActionRun
from bot.flows.remediation.authz import NODE_ACTIONS
from bot.flows.remediation.break_glass import BREAK_GLASS_ARG
from bot.flows.remediation.decide import Click
from bot.flows.remediation.propose import Request
from bot.render.proposals import APPROVE_ACTION, code_block
from bot.render.times import at
from commands.base import Flows, Invocation, Reply, rest_of, unquote
from commands.edge import Work

# The explicit table: how `/incident run <action> <target> [k=v ...]` reads each action.
# (target parameter, usage of the k=v part)
TARGET_PARAM: dict[ActionName, str] = {
    ActionName.ROLLOUT_RESTART: "deployment",
    ActionName.SCALE: "deployment",
    ActionName.ROLLOUT_UNDO: "deployment",
    ActionName.SET_ENV: "deployment",
    ActionName.SET_RESOURCES: "deployment",
    ActionName.DELETE_POD: "pod",
    ActionName.CORDON: "node",
    ActionName.UNCORDON: "node",
    ActionName.DRAIN: "node",
    ActionName.CREATE_JOB_FROM_CRONJOB: "cronjob",
    ActionName.EXEC: "pod",
    ActionName.HOST_COMMAND: "host",
}
ACTION_USAGE: dict[ActionName, str] = {
    ActionName.ROLLOUT_RESTART: "rollout_restart <namespace>/<deployment>",
    ActionName.SCALE: "scale <namespace>/<deployment> replicas=<n>",
    ActionName.ROLLOUT_UNDO: "rollout_undo <namespace>/<deployment> [to_revision=<n>]",
    ActionName.SET_ENV: "set_env <namespace>/<deployment> NAME=value [...] [container=<name>]",
    ActionName.SET_RESOURCES: (
        "set_resources <namespace>/<deployment> [requests.cpu=500m] [requests.memory=1Gi]"
        " [limits.cpu=1] [limits.memory=2Gi] [container=<name>]"
    ),
    ActionName.DELETE_POD: "delete_pod <namespace>/<pod> [grace_period_seconds=<s>]",
    ActionName.CORDON: "cordon <node>",
    ActionName.UNCORDON: "uncordon <node>",
    ActionName.DRAIN: "drain <node> [timeout_seconds=<s>] [grace_period_seconds=<s>] [delete_emptydir_data=true]",
    ActionName.CREATE_JOB_FROM_CRONJOB: "create_job_from_cronjob <namespace>/<cronjob> [job_name=<name>]",
    ActionName.EXEC: "exec <namespace>/<pod> template=<allow-listed template> [arg=value ...] [container=<name>]",
    ActionName.HOST_COMMAND: "host_command <host> template=<allow-listed host template> [arg=value ...]",
}
# Actions whose free-form keys go into a dict parameter (env names, exec template arguments).
FREE_KEYS: dict[ActionName, str] = {
    ActionName.SET_ENV: "env",
    ActionName.EXEC: "args",
    ActionName.HOST_COMMAND: "args",
}

USAGE = (
    "Usage: `/incident run <action> <namespace>/<name> [key=value ...] [cluster=<name>]`, e.g. "
    "`/incident run scale api/search-api replicas=9`, "
    "`/incident run rollout_restart skillquest/skillquest-api`, `/incident run cordon worker-1`.\n"
    "Actions: " + ", ".join(f"`{a.value}`" for a in ActionName)
)


def action_usage(action: ActionName) -> str:
    return f"Usage: `/incident run {ACTION_USAGE[action]}`"


# --------------------------------------------------------------------------- /incident run


def _assign(data: dict[str, Any], action: ActionName, key: str, value: str) -> None:
    model = PARAMS_BY_ACTION[action]
    head, _, rest = key.partition(".")
    if head in (TARGET_PARAM[action], "namespace"):
        raise UserError(
            f"`{escape(head)}` comes from the target argument, not from `{escape(key)}=`.\n{action_usage(action)}"
        )
    if rest:
        nested = data.setdefault(head, {})
        if not isinstance(nested, dict):
            raise UserError(f"`{escape(head)}` is given twice.\n{action_usage(action)}")
        nested[rest] = value
        return
    if key not in model.model_fields and action in FREE_KEYS:
        free = data.setdefault(FREE_KEYS[action], {})
        free[key] = value
        return
    if key in data:
        raise UserError(f"`{escape(key)}` is given twice.\n{action_usage(action)}")
    data[key] = value


def _field_problem(exc: ValidationError, action: ActionName) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"] if not str(p).startswith("[")) or "parameters"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown parameter for this action"
    elif error["type"] == "missing":
        message = "missing"
    return f"Invalid `{escape(where)}`: {escape(message)}.\n{action_usage(action)}"


def parse_run_args(args: list[str]) -> tuple[ActionName, ActionParams]:
    """`<action> <target> [k=v ...]` → (action, validated parameters); UserError with usage."""
    if len(args) < 2:
        raise UserError(USAGE)
    name = args[0].strip().lower().replace("-", "_")
    try:
        action = ActionName(name)
    except ValueError:
        raise UserError(f"Unknown action `{escape(args[0])}`.\n{USAGE}") from None
    target = args[1].strip()
    data: dict[str, Any] = {}
    if action in NODE_ACTIONS or action in HOST_ACTIONS:
        if "/" in target:
            raise UserError(
                f"`{action.value}` takes a {TARGET_PARAM[action]} name, not `{escape(target)}`.\n"
                f"{action_usage(action)}"
            )
        data[TARGET_PARAM[action]] = target
    else:
        namespace, sep, obj = target.partition("/")
        if not sep or not namespace or not obj:
            raise UserError(
                f"`{action.value}` needs `<namespace>/<{TARGET_PARAM[action]}>`, not `{escape(target)}`.\n"
                f"{action_usage(action)}"
            )
        data["namespace"] = namespace
        data[TARGET_PARAM[action]] = obj
    for pair in args[2:]:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"`{escape(pair)}` is not `key=value`.\n{action_usage(action)}")
        _assign(data, action, key.strip(), value)
    try:
        params = action_params(PARAMS_BY_ACTION[action].model_validate(data))
    except ValidationError as exc:
        raise UserError(_field_problem(exc, action)) from None
    return action, params


def _proposed_text(run: ActionRun) -> str:
    needed = f"{run.approvals_needed} approval(s)"
    return (
        f"Proposed “{run.title}” (run {run.id}): {needed} needed, expires at {at(run.expires_at)}. "
        "The proposal with its preview and buttons is in this channel."
    )


def _option(args: list[str], key: str, shape: str) -> str | None:
    """The value of a `key=value` option after the action and target, given at most once."""
    values = [a.partition("=")[2] for a in args[2:] if a.startswith(f"{key}=")]
    if len(values) > 1:
        raise UserError(f"Give `{key}={shape}` once.\n{USAGE}")
    return values[0] if values else None


async def run_subcommand(flows: Flows, user_id: str, channel_id: str, args: list[str]) -> str:
    """`/incident run <action> <namespace>/<name> [k=v ...]`: propose an action ad hoc. The
    answer goes to the requester only, with the preview lines meant for them alone."""
    # `cluster=<name>` chooses the cluster (else the one the incident's alerts name);
    # `breakglass="<reason>"` asks to bypass a cooldown (the policy's break_glass decides).
    clusters = _option(args, "cluster", "<name>")
    if clusters == "":
        raise UserError(f"Give `cluster=<name>` once.\n{USAGE}")
    glass = _option(args, BREAK_GLASS_ARG, '"<reason>"')
    action, params = parse_run_args(
        [a for a in args if not a.startswith(("cluster=", f"{BREAK_GLASS_ARG}="))]
    )
    incident = await flows.incidents.find(channel_id=channel_id, ref=None)
    request = Request(requested_by=user_id, cluster=clusters, break_glass=glass)
    proposal = await flows.proposer.propose_with_preview(incident, action, params, request)
    if proposal.run is None:  # only playbook proposals are deduplicated
        raise UserError("This was already proposed.")
    text = _proposed_text(proposal.run)
    if proposal.private_lines:
        title = "\n\n*Only you see this* (the values are not shown in the channel nor stored):\n"
        text += title + code_block(proposal.private_lines, MAX_SECTION_TEXT - len(text) - len(title))
    return text


# --------------------------------------------------------------------------- /incident killswitch

KILLSWITCH_USAGE = "Usage: `/incident killswitch [on|off] [reason]` (without arguments: its state)"


async def killswitch(flows: Flows, inv: Invocation) -> Reply:
    """`/incident killswitch on|off [reason]`: stop every remediation, on every replica, or allow
    them again; without arguments, say whether it is on."""
    if not inv.args or inv.args[0].lower() == "status":
        return Reply(await flows.decisions.kill_switch.status())
    word = inv.args[0].lower()
    if word not in ("on", "off"):
        raise UserError(KILLSWITCH_USAGE)
    reason = unquote(rest_of(inv.text))
    return Reply(await flows.decisions.kill_switch.flip(inv.user_id, word == "on", reason))


# --------------------------------------------------------------------------- buttons


def decide_button(flows: Flows, action_id: str) -> Work:
    """Approve or reject: the button value is only the run's opaque token."""
    click = Click.APPROVE if action_id == APPROVE_ACTION else Click.REJECT

    async def work(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        outcome = await flows.decisions.decide(click, str(action.get("value") or ""), user)
        return Reply(outcome.text)

    return work
