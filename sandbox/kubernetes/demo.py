"""The demo cluster ``seed_demo()`` builds: namespaces, three nodes, the seed systems' workloads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sandbox.kubernetes.objects import annotations_of, meta_of, timestamp, utc_now
from sandbox.kubernetes.resources import CHANGE_CAUSE, MIRROR_ANNOTATION
from sandbox.kubernetes.writes import Writes

JSON = dict[str, Any]


#: The seed systems' Deployments: namespace, name, container, replicas, image, (old tag, new tag),
#: env, (cpu request, memory request, cpu limit, memory limit), whether it mounts a scratch volume.
_DEMO_APPS: Final = [
    (
        "skillquest",
        "skillquest-api",
        "api",
        3,
        "registry.skillquest.io/skillquest-api",
        ("1.14.2", "1.15.0"),
        {"MAINTENANCE_MODE": "false", "LOG_LEVEL": "info"},
        ("250m", "512Mi", "1", "1Gi"),
        False,
    ),
    (
        "skillquest",
        "skillquest-worker",
        "worker",
        2,
        "registry.skillquest.io/skillquest-worker",
        ("1.14.2", "1.15.0"),
        {"QUEUE": "default"},
        ("250m", "512Mi", "1", "1Gi"),
        False,
    ),
    (
        "birthday-scheduler",
        "birthday-scheduler-api",
        "api",
        2,
        "ghcr.io/birthday/birthday-scheduler-api",
        ("2.3.1", "2.4.0"),
        {"DATABASE_POOL_MAX": "20", "NODE_ENV": "production"},
        ("200m", "256Mi", "500m", "512Mi"),
        False,
    ),
    (
        "birthday-scheduler",
        "birthday-scheduler-worker",
        "worker",
        3,
        "ghcr.io/birthday/birthday-scheduler-worker",
        ("2.3.1", "2.4.0"),
        {"WORKER_CONCURRENCY": "10", "NODE_ENV": "production"},
        ("250m", "512Mi", "500m", "512Mi"),
        False,
    ),
    (
        "birthday-scheduler",
        "birthday-scheduler-scheduler",
        "scheduler",
        1,
        "ghcr.io/birthday/birthday-scheduler-scheduler",
        ("2.3.1", "2.4.0"),
        {"NODE_ENV": "production"},
        ("100m", "128Mi", "250m", "256Mi"),
        False,
    ),
    (
        "api",
        "search-api",
        "search-api",
        6,
        "registry.skillforge.dev/search-api",
        ("3.7.0", "3.8.1"),
        {"CACHE_TTL_SECONDS": "300"},
        ("500m", "1Gi", "1", "2Gi"),
        False,
    ),
    (
        "data-pipelines",
        "analytics-event-router",
        "router",
        2,
        "registry.skillforge.dev/analytics-event-router",
        ("0.9.4", "0.9.5"),
        {"KAFKA_BROKERS": "kafka:9092"},
        ("250m", "256Mi", "500m", "512Mi"),
        True,
    ),
]


class DemoCluster(Writes):
    """``seed_demo()``: the cluster the demo and the integration tests start from."""

    def seed_demo(self) -> None:
        """The seed systems: SkillQuest, Birthday Scheduler, SkillForge (api, data-pipelines), monitoring."""
        self._immediate = True
        try:
            self._seed()
        finally:
            self._immediate = False

    def _seed(self) -> None:
        created = utc_now() - timedelta(days=30)
        self._seed_namespaces(created)
        for i in range(1, 4):
            self._seed_node(i, created)
        for ns, name, container, replicas, image, (old, new), env, res, scratch in _DEMO_APPS:
            self._seed_deployment(ns, name, container, replicas, image, old, new, env, res, scratch)
        self._seed_databases()
        self._seed_services()
        self._seed_budget_and_cronjobs()
        self._seed_warning_events()

    def _seed_namespaces(self, created: datetime) -> None:
        for ns in (
            "default",
            "kube-system",
            "skillquest",
            "birthday-scheduler",
            "api",
            "data-pipelines",
            "monitoring",
        ):
            self.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": ns,
                        "labels": {"kubernetes.io/metadata.name": ns},
                        "creationTimestamp": timestamp(created),
                    },
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }
            )

    def _seed_node(self, i: int, created: datetime) -> None:
        name = f"worker-{i}"
        self.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "creationTimestamp": timestamp(created),
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "node.kubernetes.io/instance-type": "m6i.xlarge",
                        "topology.kubernetes.io/zone": f"eu-west-1{'abc'[i - 1]}",
                    },
                },
                "spec": {
                    "podCIDR": f"10.244.{i}.0/24",
                    "providerID": f"aws:///eu-west-1{'abc'[i - 1]}/i-0{i}",
                },
                "status": {
                    "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                    "allocatable": {"cpu": "3920m", "memory": "15Gi", "pods": "110"},
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": timestamp(),
                            "lastTransitionTime": timestamp(created),
                        },
                        {
                            "type": "MemoryPressure",
                            "status": "False",
                            "reason": "KubeletHasSufficientMemory",
                            "message": "kubelet has sufficient memory available",
                            "lastHeartbeatTime": timestamp(),
                            "lastTransitionTime": timestamp(created),
                        },
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": f"10.0.{i}.10"},
                        {"type": "Hostname", "address": name},
                    ],
                    "nodeInfo": {
                        "machineID": f"m{i}",
                        "systemUUID": f"s{i}",
                        "bootID": f"b{i}",
                        "kernelVersion": "6.1.0-27-cloud-amd64",
                        "osImage": "Debian GNU/Linux 12 (bookworm)",
                        "containerRuntimeVersion": "containerd://1.7.24",
                        "kubeletVersion": "v1.34.0",
                        "kubeProxyVersion": "v1.34.0",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                    },
                },
            }
        )
        # A DaemonSet pod and a mirror pod on every node: drain skips both.
        self._seed_pod(
            "monitoring",
            f"node-exporter-{self._suffix()}",
            name,
            {"app.kubernetes.io/name": "node-exporter"},
            "quay.io/prometheus/node-exporter:v1.8.2",
            "node-exporter",
            owner=("apps/v1", "DaemonSet", "node-exporter"),
        )
        self._seed_pod(
            "kube-system",
            f"kube-proxy-{name}",
            name,
            {"k8s-app": "kube-proxy"},
            "registry.k8s.io/kube-proxy:v1.34.0",
            "kube-proxy",
            owner=("v1", "Node", name),
            annotations={MIRROR_ANNOTATION: f"mirror-{name}"},
        )

    def _seed_databases(self) -> None:
        """StatefulSet pods (no StatefulSet object): they come back under the same name."""
        self._seed_pod(
            "skillquest",
            "skillquest-postgres-0",
            None,
            {"app": "skillquest-postgres"},
            "postgres:16.4",
            "postgres",
            owner=("apps/v1", "StatefulSet", "skillquest-postgres"),
        )
        self._seed_pod(  # the name the SkillQuest runbook (and its playbook) uses
            "skillquest",
            "postgres-0",
            None,
            {"app": "postgres"},
            "postgres:16.4",
            "postgres",
            owner=("apps/v1", "StatefulSet", "postgres"),
        )
        self._seed_pod(
            "birthday-scheduler",
            "postgres-0",
            None,
            {"app": "postgres"},
            "postgres:16.4",
            "postgres",
            owner=("apps/v1", "StatefulSet", "postgres"),
        )

    def _seed_services(self) -> None:
        """A Service in front of each app (`<app>-http`) and of each database (`postgres`), as
        their charts would create them: what a blackbox probe or an ingress alert names."""
        fronts = [(ns, f"{name}-http", name, 80) for ns, name, *_ in _DEMO_APPS]
        fronts += [(ns, "postgres", "postgres", 5432) for ns in ("skillquest", "birthday-scheduler")]
        for namespace, service, app, port in fronts:
            self.create(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": service, "namespace": namespace, "labels": {"app": app}},
                    "spec": {
                        "type": "ClusterIP",
                        "selector": {"app": app},
                        "ports": [{"name": "main", "port": port, "targetPort": port, "protocol": "TCP"}],
                    },
                }
            )

    def _seed_budget_and_cronjobs(self) -> None:
        self.create(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "search-api-pdb", "namespace": "api"},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "search-api"}}},
            }
        )
        self._seed_cronjob(
            "data-pipelines",
            "analytics-backfill",
            "0 3 * * *",
            "registry.skillforge.dev/analytics-backfill:0.9.5",
            ["python", "-m", "backfill", "--since=24h"],
        )
        self._seed_cronjob(
            "api",
            "search-cache-warm",
            "*/30 * * * *",
            "registry.skillforge.dev/search-api:3.8.1",
            ["search-api", "cache-warm", "--top=5000"],
        )

    def _seed_warning_events(self) -> None:
        crashing = self.deployment_pods("birthday-scheduler", "birthday-scheduler-worker")[0]
        self._event(
            crashing,
            "BackOff",
            f"Back-off restarting failed container worker in pod {meta_of(crashing)['name']}",
            type_="Warning",
            component="kubelet",
        )
        self._event(
            crashing,
            "OOMKilling",
            "Memory cgroup out of memory: Killed process 2231 (node)",
            type_="Warning",
            component="kernel-monitor",
        )

    def _seed_pod(
        self,
        namespace: str,
        name: str,
        node: str | None,
        labels: dict[str, str],
        image: str,
        container: str,
        *,
        owner: tuple[str, str, str],
        annotations: dict[str, str] | None = None,
    ) -> None:
        api_version, kind, owner_name = owner
        owner_obj: JSON = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": owner_name, "namespace": namespace, "uid": self._next_uid()},
            "spec": {
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": container, "image": image}]},
                }
            },
        }
        if annotations:
            owner_obj["spec"]["template"]["metadata"]["annotations"] = annotations
        self._create_pod_for(owner_obj, kind, name, False, node)

    def _seed_deployment(
        self,
        namespace: str,
        name: str,
        container: str,
        replicas: int,
        image: str,
        old: str,
        new: str,
        env: dict[str, str],
        resources: tuple[str, str, str, str],
        scratch: bool,
    ) -> None:
        cpu_req, mem_req, cpu_lim, mem_lim = resources
        env_list: list[JSON] = [{"name": k, "value": v} for k, v in env.items()]
        env_list.append(
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": f"{name}-secrets", "key": "database-url"}},
            }
        )
        pod_spec: JSON = {
            "containers": [
                {
                    "name": container,
                    "image": f"{image}:{old}",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "env": env_list,
                    "resources": {
                        "requests": {"cpu": cpu_req, "memory": mem_req},
                        "limits": {"cpu": cpu_lim, "memory": mem_lim},
                    },
                }
            ]
        }
        if scratch:
            pod_spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
            pod_spec["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
        labels = {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/component": container}
        self.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app": name},
                    "annotations": {CHANGE_CAUSE: f"helm upgrade {name} --set image.tag={old}"},
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            }
        )

        def upgrade(dep: JSON) -> None:
            annotations_of(dep)[CHANGE_CAUSE] = f"helm upgrade {name} --set image.tag={new}"
            dep["spec"]["template"]["spec"]["containers"][0]["image"] = f"{image}:{new}"

        self.modify("deployments", namespace, name, upgrade)

    def _seed_cronjob(self, namespace: str, name: str, schedule: str, image: str, command: list[str]) -> None:
        self.create(
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                "spec": {
                    "schedule": schedule,
                    "concurrencyPolicy": "Forbid",
                    "suspend": False,
                    "successfulJobsHistoryLimit": 3,
                    "failedJobsHistoryLimit": 1,
                    "jobTemplate": {
                        "metadata": {
                            "labels": {"app": name},
                            "annotations": {"skillforge.io/owner": "data-platform"},
                        },
                        "spec": {
                            "backoffLimit": 2,
                            "template": {
                                "metadata": {"labels": {"app": name}},
                                "spec": {
                                    "restartPolicy": "OnFailure",
                                    "containers": [{"name": name, "image": image, "command": command}],
                                },
                            },
                        },
                    },
                },
                "status": {"lastScheduleTime": timestamp(utc_now() - timedelta(hours=3))},
            }
        )
