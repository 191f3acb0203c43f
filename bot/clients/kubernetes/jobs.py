"""Create a Job from a CronJob: POST a Job built like `kubectl create job --from=cronjob/...`."""

from __future__ import annotations

import shlex

from bot.clients.kubernetes.api import DRY_RUN, KubeApi
from bot.clients.kubernetes.context import Expectation, Request, checked_preview, refuse_if_changed
from bot.clients.kubernetes.objects import (
    JSON,
    dig,
    dig_dict,
    dig_dicts,
    dig_list,
    images,
    meta,
    resource_version,
)
from bot.clients.kubernetes.results import Preview, Result
from bot.core.actions import CreateJobFromCronJobParams

INSTANTIATE = "cronjob.kubernetes.io/instantiate"
JOB_NAME_MAX = 63


def _job_name(api: KubeApi, p: CreateJobFromCronJobParams) -> str:
    if p.job_name:
        return p.job_name
    suffix = f"-manual-{api.job_suffix()}"
    return f"{p.cronjob[: JOB_NAME_MAX - len(suffix)].rstrip('-.')}{suffix}"


def job_from_cronjob(cronjob: JSON, name: str) -> JSON:
    """kubectl create job --from=cronjob (pkg/cmd/create/create_job.go createJobFromCronJob)."""
    cron_meta = meta(cronjob)
    job_template = dig_dict(cronjob, "spec", "jobTemplate")
    template_meta = dig_dict(job_template, "metadata")
    job_meta: JSON = {
        "name": name,
        "namespace": cron_meta.get("namespace"),
        "annotations": {INSTANTIATE: "manual", **dig_dict(template_meta, "annotations")},
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": cron_meta.get("name"),
                "uid": cron_meta.get("uid"),
                "controller": True,
            }
        ],
    }
    labels = dig_dict(template_meta, "labels")
    if labels:
        job_meta["labels"] = dict(labels)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": dig_dict(job_template, "spec"),
    }


async def preview_create_job(api: KubeApi, p: CreateJobFromCronJobParams, req: Request) -> Preview:
    label = f"{p.namespace}/{p.cronjob}"
    cronjob = await api.read_cronjob(p.namespace, p.cronjob)
    name = _job_name(api, p)
    job = job_from_cronjob(cronjob, name)
    job_containers = dig_dicts(job, "spec", "template", "spec", "containers")
    lines = [
        f"create job {p.namespace}/{name} from cronjob {p.cronjob}"
        + ("" if p.job_name else " (the name suffix is chosen again at execution)"),
        f"image(s): {', '.join(images(job_containers))}",
    ]
    for c in job_containers:
        argv = [*dig_list(c, "command"), *dig_list(c, "args")]
        if argv:
            lines.append(f"container {c.get('name')}: {shlex.join(str(a) for a in argv)}")
    suspended = " (cronjob suspended)" if dig(cronjob, "spec", "suspend") else ""
    lines.append(f"cronjob schedule {dig(cronjob, 'spec', 'schedule')}{suspended}")
    problem = await api.dry_run(
        f"create job {p.namespace}/{name}",
        api.jobs.create_namespaced_job(p.namespace, job, dry_run=DRY_RUN, field_manager=api.field_manager),
    )
    return checked_preview(req.action, f"cronjob {label}", "cronjob", cronjob, lines, problem)


async def create_job(
    api: KubeApi, p: CreateJobFromCronJobParams, req: Request, expect: Expectation
) -> Result:
    label = f"{p.namespace}/{p.cronjob}"
    cronjob = await api.read_cronjob(p.namespace, p.cronjob)
    refuse_if_changed("cronjob", label, cronjob, expect)
    name = _job_name(api, p)
    created = api.to_json(
        await api.call(
            f"create job {p.namespace}/{name}",
            api.jobs.create_namespaced_job(
                p.namespace, job_from_cronjob(cronjob, name), field_manager=api.field_manager
            ),
        )
    )
    return Result(
        req.action,
        f"cronjob {label}",
        [f"created job {p.namespace}/{name} from cronjob {p.cronjob}"],
        resource_version=resource_version(created),
        job_name=name,
    )
