"""The investigator's generic Kubernetes reads (get / list / describe of the non-secret kinds)
through a signed `/incident investigate`, against the sandbox apiserver, which serves Secrets
too: the bot must never ask for one, never pass an env value or a ConfigMap value to the
model, and stay in the namespaces the policy allows."""

from __future__ import annotations

from typing import Any

from sandbox.llm import answer, call
from tests.integration import test_investigator as base
from tests.integration.test_investigator import (
    NAMESPACE,
    Env,
    open_incident,
    result_text,
    rows,
    running_bot,
    types,
)

# The investigator's fixtures (sandbox Kubernetes, fake model, the bot's settings).
kube, llm, env = base.kube, base.llm, base.env

DB_PASSWORD = "s3cr3t-statefulset-password"
CONFIG_VALUE = "postgres://app:configmap-password@db:5432/app"
SECRET_VALUE = "c2VjcmV0LW9iamVjdC12YWx1ZQ=="


def seed_objects(env: Env) -> None:
    """A StatefulSet with an env value, a ConfigMap with a secret-looking value, an HPA, and a
    Secret: everything the reads may meet."""
    env.kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": "postgres",
                "namespace": NAMESPACE,
                "annotations": {
                    # kubectl apply keeps the whole applied object here, env values included.
                    "kubectl.kubernetes.io/last-applied-configuration": f'{{"env":"{DB_PASSWORD}"}}'
                },
            },
            "spec": {
                "replicas": 1,
                "serviceName": "postgres",
                "selector": {"matchLabels": {"app": "postgres"}},
                "template": {
                    "metadata": {"labels": {"app": "postgres"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "postgres",
                                "image": "postgres:16.4",
                                "env": [
                                    {"name": "POSTGRES_PASSWORD", "value": DB_PASSWORD},
                                    {
                                        "name": "REPLICA_PASSWORD",
                                        "valueFrom": {"secretKeyRef": {"name": "pg", "key": "replica"}},
                                    },
                                ],
                            }
                        ]
                    },
                },
            },
            "status": {"replicas": 1, "readyReplicas": 0},
        }
    )
    env.kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": NAMESPACE},
            "data": {"DATABASE_URL": CONFIG_VALUE, "POOL_MAX": "20"},
        }
    )
    env.kube.create(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "birthday-scheduler-api", "namespace": NAMESPACE},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "birthday-scheduler-api",
                },
                "minReplicas": 2,
                "maxReplicas": 4,
            },
            "status": {"currentReplicas": 4, "desiredReplicas": 4},
        }
    )
    env.kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pg", "namespace": NAMESPACE},
            "data": {"replica": SECRET_VALUE},
        }
    )


def _answer(*citations: str) -> dict[str, Any]:
    return {
        "findings": [
            {"claim": "The HPA is at its maximum.", "citations": list(citations), "confidence": 0.8}
        ],
        "not_enough_evidence": False,
    }


async def test_generic_reads_return_no_secret_and_keep_to_the_policy(env: Env) -> None:
    seed_objects(env)
    async with running_bot(env.settings()) as bot:
        channel = await open_incident(env, bot)
        before = len(env.kube.requests)
        env.llm.play(
            [
                call(
                    ("k8s_get", {"kind": "StatefulSet", "namespace": NAMESPACE, "name": "postgres"}),
                    ("k8s_get", {"kind": "configmap", "namespace": NAMESPACE, "name": "app-config"}),
                    ("k8s_list", {"kind": "HorizontalPodAutoscaler", "namespace": NAMESPACE}),
                    (
                        "k8s_describe",
                        {"kind": "Deployment", "namespace": NAMESPACE, "name": "birthday-scheduler-api"},
                    ),
                ),
                call(
                    ("k8s_get", {"kind": "Secret", "namespace": NAMESPACE, "name": "pg"}),
                    ("k8s_list", {"kind": "secrets", "namespace": NAMESPACE}),
                    ("k8s_get", {"kind": "ConfigMap", "namespace": "kube-system", "name": "coredns"}),
                    ("k8s_list", {"kind": "Node", "namespace": NAMESPACE}),
                ),
                answer(_answer("c3")),
            ]
        )
        await types(env, bot, "U0ALICE", channel, "investigate is the api scaled out?", "Investigating")
        shown = await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        assert "HPA is at its maximum" in shown and "`c3` k8s_list" in shown

        calls = await rows(
            env.dsn, "SELECT call_id, tool, ok, output FROM investigation_tool_calls ORDER BY at"
        )
        assert [(c["tool"], c["ok"]) for c in calls] == [
            ("k8s_get", True),
            ("k8s_get", True),
            ("k8s_list", True),
            ("k8s_describe", True),
            ("k8s_get", False),
            ("k8s_list", False),
            ("k8s_get", False),
            ("k8s_list", False),
        ]
        statefulset, configmap, hpas, described, *refused = [c["output"] for c in calls]
        # Names are kept, values never: env, last-applied, ConfigMap data.
        assert '"name":"POSTGRES_PASSWORD"' in statefulset and '"from":"secretKeyRef"' in statefulset
        assert "last-applied-configuration" not in statefulset
        assert '"data":["DATABASE_URL","POOL_MAX"]' in configmap
        assert "birthday-scheduler-api currentReplicas=4 desiredReplicas=4" in hpas
        assert '"kind":"Deployment"' in described and "events:" in described
        assert all("not a kind the investigator may read" in r for r in refused[:2])
        assert "not one the policy allows" in refused[2]
        assert "read one at a time by name" in refused[3]

        # Nothing secret reached the model; no Secret, no other namespace, no write was requested.
        bodies = str(env.llm.requests)
        for value in (DB_PASSWORD, CONFIG_VALUE, SECRET_VALUE, "configmap-password"):
            assert value not in bodies
        sent = env.kube.requests[before:]
        assert sent and all(r.method == "GET" for r in sent)
        assert not [
            r.path for r in sent if "/secrets" in r.path or "kube-system" in r.path or "/nodes" in r.path
        ]
        # Positive control: the sandbox does hold and serve those values.
        assert env.kube.get("secrets", NAMESPACE, "pg") is not None
        config = env.kube.get("configmaps", NAMESPACE, "app-config")
        assert config is not None and config["data"]["DATABASE_URL"] == CONFIG_VALUE
