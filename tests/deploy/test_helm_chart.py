"""helm/incidentbot: lint, render, Kubernetes 1.33 schemas, and what the rendered objects promise."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.config.settings import Settings
from tests.deploy.conftest import (
    CHART,
    FULL_VALUES,
    NAMESPACE,
    RELEASE,
    ROOT,
    Manifest,
    Render,
    of_kind,
    one,
    run_helm,
)

# kubernetes-validate ships schemas for 1.25 ... 1.37; the target cluster version is 1.33.
KUBERNETES_VERSION = "1.33.0"
# Prometheus Operator CRDs have no schema in kubernetes-validate: they are checked structurally
# below (and their rules with promtool) instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
FULLNAME = f"{RELEASE}-incidentbot"

SECRET_KEYS = {
    "SLACK_BOT_TOKEN": "required",
    "SLACK_SIGNING_SECRET": "optional",
    "SLACK_APP_TOKEN": "optional",
    "ALERTMANAGER_WEBHOOK_TOKEN": "required",
    "DATABASE_URL": "required",
    "REDIS_URL": "required",
    "PAGERDUTY_API_TOKEN": "optional",
    "PAGERDUTY_WEBHOOK_SECRET": "optional",
    "PAGERDUTY_ROUTING_KEY": "optional",
}
# Variables the chart sets that are not bot settings.
NON_SETTINGS_ENV = {"MPLCONFIGDIR", "TZ"}
EXISTING_SECRET = ("secrets.existingSecret=incidentbot-tokens",)


def container(manifest: Manifest) -> dict[str, Any]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(manifest: Manifest) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(manifest)["env"]}


# --------------------------------------------------------------------------- helm itself


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_helm_lint(helm: Path, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_helm_is_version_4(helm: Path) -> None:
    result = run_helm(helm, "version", "--short")
    assert result.returncode == 0 and result.stdout.startswith("v4."), result.stdout + result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("env.HTTP_PORT=9000",), "HTTP_PORT"),
        (("rbac.namespaces[0]=*",), "namespaces"),
        (("replicaCount=-1",), "replicaCount"),
        (("unknownValue=1",), "unknownValue"),
        (("secrets.values.SLACK_TOKEN=x",), "SLACK_TOKEN"),
        (("ingress.paths[0]=slack",), "paths"),
    ],
)
def test_values_schema_rejects_mistakes(helm: Path, sets: tuple[str, ...], message: str) -> None:
    args = ["template", RELEASE, str(CHART)]
    for s in sets:
        args += ["--set", s]
    result = run_helm(helm, *args)
    assert result.returncode != 0, f"{sets} was accepted"
    assert message in result.stderr


def test_notes_render_with_warnings_for_missing_secrets(helm: Path) -> None:
    result = run_helm(helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "/webhooks/alertmanager" in notes
    assert "WARNING: required secrets are empty: SLACK_BOT_TOKEN" in notes
    assert "rbac.roles is empty" in notes
    assert "incidentbot rbac --policy" in notes
    assert "WARNING: networkPolicy" not in notes

    full = run_helm(
        helm, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", "-f", str(FULL_VALUES)
    )
    assert full.returncode == 0, full.stderr
    full_notes = full.stdout.split("NOTES:", 1)[1]
    assert "WARNING" not in full_notes
    assert "https://incidentbot.example.com" in full_notes
    assert "namespace checkout: rollout_restart, scale" in full_notes
    assert "node operations: uncordon, drain (cluster-wide)" in full_notes


# --------------------------------------------------------------------------- schemas


def _validate_all(manifests: list[Manifest]) -> list[str]:
    problems = []
    for m in manifests:
        if m["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(m, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            problems.append(f"{m['kind']}/{m['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(exc.message)
    return problems


@pytest.mark.parametrize(
    ("values", "sets"),
    [((), ()), ((FULL_VALUES,), ()), ((FULL_VALUES,), EXISTING_SECRET)],
    ids=["default", "full", "full-existing-secret"],
)
def test_every_manifest_matches_the_kubernetes_schema(
    render: Render, values: tuple[Path, ...], sets: tuple[str, ...]
) -> None:
    manifests = render(*values, sets=sets)
    assert manifests
    assert _validate_all(manifests) == []


def test_full_values_render_every_kind(full_manifests: list[Manifest]) -> None:
    kinds = {m["kind"] for m in full_manifests}
    assert kinds == {
        "Deployment",
        "Service",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
        "Ingress",
        "NetworkPolicy",
        "Job",
    }
    for m in full_manifests:
        if m["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert m["metadata"].get("namespace"), f"{m['kind']}/{m['metadata']['name']} has no namespace"


def test_default_values_render_only_the_basics(default_manifests: list[Manifest]) -> None:
    kinds = sorted(m["kind"] for m in default_manifests)
    assert kinds == sorted(
        [
            "Deployment",
            "Service",
            "ServiceAccount",
            "Secret",
            "Secret",
            "PodDisruptionBudget",
            "Job",
            "NetworkPolicy",
        ]
    )


# --------------------------------------------------------------------------- the Deployment


@pytest.mark.parametrize("which", ["default", "full"])
def test_deployment_is_locked_down(
    which: str, default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    manifests = default_manifests if which == "default" else full_manifests
    for kind in ("Deployment", "Job"):
        workload = one(manifests, kind)
        pod = workload["spec"]["template"]["spec"]
        c = container(workload)
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["runAsUser"] == 10001
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        # The only writable path: an emptyDir at /tmp.
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert env_of(workload)["MPLCONFIGDIR"]["value"].startswith("/tmp/")
        assert c["resources"]["requests"] and c["resources"]["limits"]


def test_deployment_defaults(default_manifests: list[Manifest]) -> None:
    deployment = one(default_manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    c = container(deployment)
    assert c["args"] == ["run"]
    assert c["image"] == "incidentbot:0.1.0"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    env = env_of(deployment)
    assert env["HTTP_PORT"]["value"] == "8080"
    assert "PLAYBOOKS_DIR" not in env, "without an override the image's bundled playbooks are used"
    assert not of_kind(default_manifests, "ConfigMap")
    assert not of_kind(default_manifests, "Role") and not of_kind(default_manifests, "ClusterRole")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["automountServiceAccountToken"] is True

    service = one(default_manifests, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = one(default_manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize(
    ("values", "sets"),
    [((), ()), ((FULL_VALUES,), ()), ((FULL_VALUES,), EXISTING_SECRET)],
    ids=["default", "full", "full-existing-secret"],
)
def test_every_token_comes_from_the_secret(
    render: Render, values: tuple[Path, ...], sets: tuple[str, ...]
) -> None:
    manifests = render(*values, sets=sets)
    existing = bool(sets)
    secret_name = "incidentbot-tokens" if existing else FULLNAME
    env = env_of(one(manifests, "Deployment"))
    for key, need in SECRET_KEYS.items():
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret_name, "key": key, "optional": need == "optional"}, key
    secrets = {s["metadata"]["name"] for s in of_kind(manifests, "Secret")}
    if existing:
        assert secrets == set(), "with an existing Secret the chart creates none"
    else:
        assert secrets == {FULLNAME, f"{FULLNAME}-migrate"}


def test_every_variable_is_a_bot_setting(full_manifests: list[Manifest]) -> None:
    settings = {name.upper() for name in Settings.model_fields}
    for kind in ("Deployment", "Job"):
        names = set(env_of(one(full_manifests, kind)))
        assert names - settings <= NON_SETTINGS_ENV, f"{kind}: unknown variables {names - settings}"
    assert set(SECRET_KEYS) <= settings


def test_chart_secret_holds_the_values(full_manifests: list[Manifest], full_values: dict[str, Any]) -> None:
    expected = {k: v for k, v in full_values["secrets"]["values"].items() if v}
    assert set(expected) == set(SECRET_KEYS), "values-full.yaml sets every secret"
    for name in (FULLNAME, f"{FULLNAME}-migrate"):
        secret = one(full_manifests, "Secret", name)
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert decoded == expected


def test_plain_settings_from_values(full_manifests: list[Manifest], full_values: dict[str, Any]) -> None:
    env = env_of(one(full_manifests, "Deployment"))
    for key, value in full_values["env"].items():
        assert env[key]["value"] == str(value)
    assert env["TZ"]["value"] == "UTC"
    assert env["REPLICA_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["HTTP_PORT"]["value"] == "8080"


def test_playbooks_override(
    full_manifests: list[Manifest], full_values: dict[str, Any], tmp_path: Path
) -> None:
    override = full_values["playbooks"]["override"]
    mount_path = full_values["playbooks"]["mountPath"]
    configmap = one(full_manifests, "ConfigMap", f"{FULLNAME}-playbooks")
    assert configmap["data"] == override
    deployment = one(full_manifests, "Deployment")
    assert env_of(deployment)["PLAYBOOKS_DIR"]["value"] == mount_path
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    playbook_mounts = [m for m in mounts.values() if m["mountPath"] == mount_path]
    assert len(playbook_mounts) == 1 and playbook_mounts[0]["readOnly"] is True
    assert volumes[playbook_mounts[0]["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    # A changed override rolls the pods.
    assert "checksum/playbooks" in deployment["spec"]["template"]["metadata"]["annotations"]
    # The example override is a real, valid playbooks directory.
    for name, content in configmap["data"].items():
        (tmp_path / name).write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "bot", "playbooks", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- migration hook


@pytest.mark.parametrize("existing", [False, True], ids=["chart-secret", "existing-secret"])
def test_migration_job_is_a_pre_install_hook(render: Render, existing: bool) -> None:
    manifests = render(FULL_VALUES, sets=EXISTING_SECRET if existing else ())
    job = one(manifests, "Job")
    deployment = one(manifests, "Deployment")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    c = container(job)
    assert c["args"] == ["migrate"]
    assert c["image"] == container(deployment)["image"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod, "the chart's service account does not exist at pre-install"
    # The migration pod must not be picked up by the Service or the PodDisruptionBudget.
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()
    env = env_of(job)
    assert "PLAYBOOKS_DIR" not in env
    names = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in env.values()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    if existing:
        assert names == {"incidentbot-tokens"}
    else:
        # A pre-install hook runs before the release's Secret exists: it reads a hook Secret
        # created just before it (lower weight).
        assert names == {f"{FULLNAME}-migrate"}
        hook_secret = one(manifests, "Secret", f"{FULLNAME}-migrate")
        secret_annotations = hook_secret["metadata"]["annotations"]
        assert secret_annotations["helm.sh/hook"] == annotations["helm.sh/hook"]
        assert int(secret_annotations["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])


def test_migrations_can_be_turned_off(render: Render) -> None:
    manifests = render(sets=("migrations.enabled=false",))
    assert not of_kind(manifests, "Job")
    assert [s["metadata"]["name"] for s in of_kind(manifests, "Secret")] == [FULLNAME]


# --------------------------------------------------------------------------- network


def test_ingress_exposes_only_slack_and_webhooks(full_manifests: list[Manifest]) -> None:
    ingress = one(full_manifests, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "incidentbot.example.com"
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert set(paths) == {"/slack/events", "/webhooks/alertmanager", "/webhooks/pagerduty"}
    for p in paths.values():
        assert p["pathType"] == "Exact"
        assert p["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["secretName"] == "incidentbot-tls"


# What the bot talks to, by default: DNS, PostgreSQL, Redis, the Kubernetes API (the Service's
# 443 and the apiserver's own 6443), Slack and PagerDuty over HTTPS, Prometheus, Alertmanager.
DEFAULT_EGRESS_PORTS = [
    [(53, "UDP"), (53, "TCP")],
    [(5432, "TCP")],
    [(6379, "TCP")],
    [(443, "TCP"), (6443, "TCP")],
    [(443, "TCP")],
    [(9090, "TCP")],
    [(9093, "TCP")],
]


def _ports(rule: dict[str, Any]) -> list[tuple[int | str, str]]:
    return [(p["port"], p["protocol"]) for p in rule["ports"]]


def test_network_policy_is_on_by_default_and_limits_egress(default_manifests: list[Manifest]) -> None:
    policy = one(default_manifests, "NetworkPolicy")
    deployment = one(default_manifests, "Deployment")
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress == {"ports": [{"port": "http", "protocol": "TCP"}]}
    egress = policy["spec"]["egress"]
    assert [_ports(rule) for rule in egress] == DEFAULT_EGRESS_PORTS
    assert all(set(rule) == {"ports"} for rule in egress), "no destination narrowed by default"


def test_network_policy_is_configurable(full_manifests: list[Manifest], render: Render) -> None:
    policy = one(full_manifests, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(ingress["from"]) == 2
    egress = policy["spec"]["egress"]
    db = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}}
    # Alertmanager dropped (ports: []), Postgres and Redis narrowed to their namespace, one extra.
    assert [_ports(rule) for rule in egress] == [
        *DEFAULT_EGRESS_PORTS[:6],
        [(9091, "TCP")],
    ]
    assert egress[1]["to"] == [db] and egress[2]["to"] == [db]
    assert egress[6]["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # Egress unrestricted on request; no NetworkPolicy at all on request.
    open_egress = one(render(sets=("networkPolicy.egress.restricted=false",)), "NetworkPolicy")
    assert open_egress["spec"]["policyTypes"] == ["Ingress"] and "egress" not in open_egress["spec"]
    assert not of_kind(render(sets=("networkPolicy.enabled=false",)), "NetworkPolicy")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("networkPolicy.egress=[]",), "egress"),
        (("networkPolicy.allowDNS=true",), "allowDNS"),
        (("networkPolicy.egress.postgres.ports[0].protocol=ICMP",), "protocol"),
        (("networkPolicy.egress.smtp.ports[0].port=25",), "smtp"),
    ],
)
def test_network_policy_schema(helm: Path, sets: tuple[str, ...], message: str) -> None:
    args = ["template", RELEASE, str(CHART)]
    for s in sets:
        args += ["--set", s]
    result = run_helm(helm, *args)
    assert result.returncode != 0, f"{sets} was accepted"
    assert message in result.stderr


def test_notes_warn_when_the_network_is_open(helm: Path) -> None:
    for sets, warning in (
        ("networkPolicy.enabled=false", "WARNING: networkPolicy.enabled=false"),
        ("networkPolicy.egress.restricted=false", "WARNING: networkPolicy.egress.restricted=false"),
    ):
        result = run_helm(
            helm, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", "--set", sets
        )
        assert result.returncode == 0, result.stderr
        assert warning in result.stdout.split("NOTES:", 1)[1]


# --------------------------------------------------------------------------- monitoring CRDs


def test_service_monitor_structure(full_manifests: list[Manifest]) -> None:
    monitor = one(full_manifests, "ServiceMonitor")
    service = one(full_manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s" and endpoint["scrapeTimeout"] == "5s"


def test_prometheus_rule_structure_and_promtool(
    full_manifests: list[Manifest], promtool: str, tmp_path: Path
) -> None:
    rule = one(full_manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    alerts: dict[str, dict[str, Any]] = {}
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}
            assert r["labels"]["severity"] in {"critical", "warning"}
            assert r["annotations"]["summary"]
            alerts[r["alert"]] = r
    exprs = {name: r["expr"] for name, r in alerts.items()}
    assert "incidentbot_webhooks_rejected_total" in exprs["IncidentbotWebhooksRejected"]
    assert "incidentbot_inbox_oldest_pending_seconds" in exprs["IncidentbotProcessingLag"]
    assert "> 30" in exprs["IncidentbotProcessingLag"], "processingLagSeconds from values"
    assert "incidentbot_slack_ratelimited_total" in exprs["IncidentbotSlackRateLimited"]
    assert "incidentbot_remediations_total{" in exprs["IncidentbotRemediationFailed"]
    assert 'result="failed"' in exprs["IncidentbotRemediationFailed"]
    for expr in exprs.values():
        assert f'job="{FULLNAME}"' in expr and f'namespace="{NAMESPACE}"' in expr
    # The rules as a Prometheus rule file: promtool parses every PromQL expression and template.
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in result.stdout


def test_grafana_dashboard_configmap(full_manifests: list[Manifest]) -> None:
    configmap = one(full_manifests, "ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "incidentbot.json").read_text())
    assert json.loads(configmap["data"]["incidentbot.json"]) == shipped


# --------------------------------------------------------------------------- the investigator

LLM_KEY = "sk-llm-key-from-the-secret"


def _volume(manifest: Manifest, name: str) -> dict[str, Any] | None:
    volumes: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["volumes"]
    return next((v for v in volumes if v["name"] == name), None)


def test_investigator_is_off_by_default(default_manifests: list[Manifest]) -> None:
    deployment = one(default_manifests, "Deployment")
    assert not [name for name in env_of(deployment) if name.startswith("LLM_")]
    assert _volume(deployment, "llm-api-key") is None


def test_investigator_values_and_its_key_as_a_mounted_file(
    full_manifests: list[Manifest], full_values: dict[str, Any], tmp_path: Path
) -> None:
    deployment = one(full_manifests, "Deployment")
    env = env_of(deployment)
    llm = {name: e for name, e in env.items() if name.startswith("LLM_")}
    # The key is a file from the Secret, never an environment variable of the pod.
    assert "LLM_API_KEY" not in llm
    assert all("value" in e and "valueFrom" not in e for e in llm.values())
    volume = _volume(deployment, "llm-api-key")
    assert volume == {
        "name": "llm-api-key",
        "secret": {
            "secretName": "incidentbot-llm",
            "defaultMode": 0o440,
            "items": [{"key": "token", "path": "api-key"}],
        },
    }
    (mount,) = [m for m in container(deployment)["volumeMounts"] if m["name"] == "llm-api-key"]
    assert mount == {"name": "llm-api-key", "mountPath": "/etc/incidentbot/llm", "readOnly": True}
    # The bot reads what the chart sets: the variables are its settings, and the file the pod
    # would hold (the Secret's key at the mount) gives it the key.
    (tmp_path / "api-key").write_text(LLM_KEY + "\n")
    plain = {name: e["value"] for name, e in llm.items()}
    assert plain["LLM_API_KEY_FILE"] == mount["mountPath"] + "/api-key"
    plain["LLM_API_KEY_FILE"] = str(tmp_path / "api-key")
    fields = {f"llm_{k.removeprefix('LLM_').lower()}": v for k, v in plain.items()}
    settings = Settings.model_validate(
        fields
        | {
            "slack_bot_token": "xoxb-1",
            "slack_signing_secret": "s" * 32,
            "alertmanager_webhook_token": "t" * 32,
            "database_url": "postgresql://x@y/z",
            "redis_url": "redis://r:6379/0",
        }
    )
    assert settings.llm_key() == LLM_KEY
    assert settings.llm_base_url == full_values["investigator"]["baseUrl"]
    assert (settings.llm_max_concurrent, settings.llm_token_budget, settings.llm_probe_interval_seconds) == (
        3,
        40000,
        30.0,
    )
    assert settings.llm_auto_investigate == "*:P1"


def test_investigator_without_a_key_mounts_nothing(render: Render) -> None:
    manifests = render(sets=("investigator.baseUrl=http://ollama:11434/v1", "investigator.model=llama3.1"))
    deployment = one(manifests, "Deployment")
    env = env_of(deployment)
    assert env["LLM_BASE_URL"]["value"] == "http://ollama:11434/v1" and "LLM_API_KEY_FILE" not in env
    assert _volume(deployment, "llm-api-key") is None
    assert _validate_all(manifests) == []


def test_investigator_egress_to_its_endpoint(render: Render) -> None:
    manifests = render(sets=("networkPolicy.egress.investigator.ports[0].port=8000",))
    egress = one(manifests, "NetworkPolicy")["spec"]["egress"]
    assert [{"port": 8000}] in [rule["ports"] for rule in egress]
    assert [{"port": 8000}] not in [r["ports"] for r in one(render(), "NetworkPolicy")["spec"]["egress"]]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("investigator.baseUrl=http://vllm:8000/v1",), "model"),
        (("investigator.baseUrl=vllm:8000",), "baseUrl"),
        (("investigator.apiKeySecret.name=Bad_Name",), "name"),
        (("investigator.maxConcurrent=0",), "maxConcurrent"),
        (("investigator.apiKey=sk-in-values",), "apiKey"),
    ],
)
def test_investigator_schema_rejects_mistakes(helm: Path, sets: tuple[str, ...], message: str) -> None:
    args = ["template", RELEASE, str(CHART)]
    for s in sets:
        args += ["--set", s]
    result = run_helm(helm, *args)
    assert result.returncode != 0, f"{sets} was accepted"
    assert message in result.stderr
