"""The importer reads runbooks as operators write them (issue #14, item 13): ``kubectl`` and
``oc``, flags in any order, the namespace anywhere, label-selector deletes, ``oc adm``,
placeholders; ``-o`` into a missing directory; the share of a third-party corpus it maps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bot.config.directory import validate_dir
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR
from bot.tools.importer import import_playbooks, import_runbook
from bot.tools.importer.coverage import measure

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "fixtures" / "runbooks"


def proposals(markdown: str) -> list[dict[str, Any]]:
    playbooks = import_playbooks(markdown, "runbook.md")
    return [r for pb in playbooks for r in pb.get("remediations", [])]


def diagnostics(markdown: str) -> list[dict[str, Any]]:
    playbooks = import_playbooks(markdown, "runbook.md")
    return [d for pb in playbooks for d in pb.get("diagnostics", [])]


def actions(markdown: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r["action"], r["params"]) for r in proposals(markdown)]


def validates(tmp_path: Path, markdown: str) -> list[str]:
    (tmp_path / "draft.yaml").write_text(import_runbook(markdown), encoding="utf-8")
    shutil.copy(DEFAULT_PLAYBOOKS_DIR / "policy.yaml", tmp_path / "policy.yaml")
    return [str(p) for p in validate_dir(tmp_path)]


# --------------------------------------------------------------------------- kubectl and oc


OC_AND_KUBECTL = """# NoLeadingVirtController

## Mitigation

1. Restart the controller:

   ```bash
   $ oc -n openshift-cnv rollout restart deployment virt-controller
   ```

2. Or, on a plain Kubernetes cluster:

   ```bash
   $ kubectl rollout restart deployment/virt-api -n kubevirt
   ```

3. Read its logs: `oc logs -n openshift-cnv deployment/virt-controller --tail=100`
"""


def test_oc_and_kubectl_both_map(tmp_path: Path) -> None:
    assert actions(OC_AND_KUBECTL) == [
        ("rollout_restart", {"namespace": "openshift-cnv", "deployment": "virt-controller"}),
        ("rollout_restart", {"namespace": "kubevirt", "deployment": "virt-api"}),
    ]
    assert diagnostics(OC_AND_KUBECTL) == [
        {"kind": "logs", "namespace": "openshift-cnv", "target": "virt-controller", "tail_lines": 100}
    ]
    assert validates(tmp_path, OC_AND_KUBECTL) == []


def test_other_commands_named_like_a_cli_do_not_map() -> None:
    # positive control above; `ocm`, `kubectx` and a word "oc" in prose are not commands
    assert actions("# X\n\n## Alert: X\n\n```bash\nocm delete pod web-0 -n shop\n```\n") == []
    assert actions("# X\n\n## Alert: X\n\n```bash\nkubectx delete pod web-0 -n shop\n```\n") == []


# --------------------------------------------------------------------------- flags anywhere

FLAGS_ANY_ORDER = """# Checkout

## Alert: CheckoutDown

### Mitigation

```bash
# the namespace before the verb, after it, attached, with `=`
kubectl -n shop scale deployment checkout --replicas=4
kubectl scale --replicas 5 -nshop deployment/cart
kubectl --namespace=shop delete pod checkout-7d9 --grace-period=10
oc delete --grace-period 20 pod cart-5c4 --namespace shop
kubectl --context prod-eu --namespace shop rollout undo deploy/checkout --to-revision=3
oc set env -n shop deployment/checkout LOG_LEVEL=debug -c app
```
"""


def test_flags_in_any_order_and_the_namespace_anywhere(tmp_path: Path) -> None:
    assert actions(FLAGS_ANY_ORDER) == [
        ("scale", {"namespace": "shop", "deployment": "checkout", "replicas": 4}),
        ("scale", {"namespace": "shop", "deployment": "cart", "replicas": 5}),
        ("delete_pod", {"namespace": "shop", "pod": "checkout-7d9", "grace_period_seconds": 10}),
        ("delete_pod", {"namespace": "shop", "pod": "cart-5c4", "grace_period_seconds": 20}),
        ("rollout_undo", {"namespace": "shop", "deployment": "checkout", "to_revision": 3}),
        (
            "set_env",
            {
                "namespace": "shop",
                "deployment": "checkout",
                "container": "app",
                "env": {"LOG_LEVEL": "debug"},
            },
        ),
    ]
    assert validates(tmp_path, FLAGS_ANY_ORDER) == []


# --------------------------------------------------------------------------- selectors

SELECTOR_DELETE = """# ClusterLogForwarderNotReady

## Mitigation

Restart the operator pods so they re-read the forwarder:

```bash
oc delete pod -n openshift-logging -l name=cluster-logging-operator
```

and, for the collectors:

```bash
kubectl delete pods -l app.kubernetes.io/component=collector,app=vector -n openshift-logging
```
"""


def test_label_selector_delete_is_a_rolling_restart_that_says_so(tmp_path: Path) -> None:
    found = proposals(SELECTOR_DELETE)
    assert [(r["action"], r["params"]) for r in found] == [
        ("rollout_restart", {"namespace": "openshift-logging", "deployment": "cluster-logging-operator"})
    ]  # the two-term selector names no one deployment: it stays text
    why = found[0]["why"]
    assert "name=cluster-logging-operator" in why and "Check that it is the deployment" in why
    assert "pods name=cluster-logging-operator" in found[0]["title"]
    assert validates(tmp_path, SELECTOR_DELETE) == []


def test_logs_by_selector_read_the_deployment() -> None:
    assert diagnostics(
        "# A\n\n## Alert: A\n\n```bash\noc logs -l app=router -n ingress --tail 50\n```\n"
    ) == [{"kind": "logs", "namespace": "ingress", "target": "router", "tail_lines": 50}]


# --------------------------------------------------------------------------- oc adm

NODE_MAINTENANCE = """# HighlyAvailableWorkloadIncorrectlySpread

## Mitigation

1. Cordon the node so nothing new lands there:
   ```console
   $ oc adm cordon "$NODE"
   ```
2. Drain it:
   ```console
   $ oc adm drain "$NODE" --ignore-daemonsets --delete-emptydir-data \\
       --grace-period=60 --timeout=5m
   ```
3. When the pods have moved, `oc adm uncordon "$NODE"`.
4. On plain Kubernetes: `kubectl drain <node-name> --ignore-daemonsets`.
"""


def test_oc_adm_cordon_drain_uncordon(tmp_path: Path) -> None:
    assert actions(NODE_MAINTENANCE) == [
        ("cordon", {"node": "$node"}),
        (
            "drain",
            {
                "node": "$node",
                "ignore_daemonsets": True,
                "delete_emptydir_data": True,
                "grace_period_seconds": 60,
                "timeout_seconds": 300,
            },
        ),
        ("uncordon", {"node": "$node"}),
        ("drain", {"node": "$node", "ignore_daemonsets": True}),
    ]
    assert validates(tmp_path, NODE_MAINTENANCE) == []


def test_oc_adm_commands_without_an_action_stay_text() -> None:
    text = "# A\n\n## Alert: A\n\n```bash\noc adm top nodes\noc adm must-gather\noc adm upgrade\n```\n"
    assert actions(text) == [] and diagnostics(text) == []


# --------------------------------------------------------------------------- placeholders

PLACEHOLDERS = """# StorageAutoScalingFailed

## Mitigation

1. Delete the stuck OSD pod:
   ```bash
   oc delete pod <osd-pod-name> -n <namespace>
   ```
2. Restart the operator: `oc rollout restart deployment ${DEPLOYMENT} -n $NAMESPACE`
3. Restart the exporter: `kubectl -n <install-namespace> rollout restart deploy/$EXPORTER_NAME`
4. Cordon the host: `kubectl cordon ${NODE_NAME}`
5. Check the NIC: `rate(node_network_receive_bytes_total{instance="<ip>", device="<dev>"}[5m]) * 8`
"""


def test_placeholders_become_alert_labels_or_marked_parameters(tmp_path: Path) -> None:
    found = proposals(PLACEHOLDERS)
    assert [(r["action"], r["params"]) for r in found] == [
        ("delete_pod", {"namespace": "$namespace", "pod": "$pod"}),
        ("rollout_restart", {"namespace": "$namespace", "deployment": "$deployment"}),
        ("rollout_restart", {"namespace": "$namespace", "deployment": "$FILL_exporter"}),
        ("cordon", {"node": "$node"}),
    ]
    assert "Fill in before use: $$FILL_exporter" in found[2]["why"]  # $$ is a literal $
    assert all("Fill in" not in r["why"] for r in found[:2] + found[3:])
    graph = import_playbooks(PLACEHOLDERS)[0]["graphs"][0]
    assert (
        graph["query"]
        == 'rate(node_network_receive_bytes_total{instance="$FILL_ip", device="$device"}[5m]) * 8'
    )
    draft = import_runbook(PLACEHOLDERS)
    fill_line = next(line for line in draft.splitlines() if line.startswith("# FILL IN: "))
    assert set(fill_line.split(" stand for")[0][len("# FILL IN: ") :].split(", ")) == {
        "$FILL_exporter",
        "$FILL_ip",
    }
    assert validates(tmp_path, PLACEHOLDERS) == []


def test_no_fill_in_header_when_every_placeholder_is_a_label() -> None:
    assert "FILL IN" not in import_runbook(NODE_MAINTENANCE)


# --------------------------------------------------------------------------- the command line


def run_import(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "playbooks", "import", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_output_into_a_missing_directory_is_a_one_line_error(tmp_path: Path) -> None:
    runbook = CORPUS / "openshift" / "NoLeadingVirtController.md"
    missing = tmp_path / "no-such-dir" / "drafts.yaml"
    result = run_import(str(runbook), "-o", str(missing))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"incidentbot: {missing}: the directory {missing.parent} does not exist; "
        "create it first or choose another -o"
    ]
    assert not missing.parent.exists()  # nothing created on the way
    # positive control: the same command into a directory that exists
    missing.parent.mkdir()
    result = run_import(str(runbook), "-o", str(missing))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(missing.read_text())[0]["match"] == {"alertname": "NoLeadingVirtController"}


def test_cli_output_onto_a_directory_and_unreadable_input_are_one_line_errors(tmp_path: Path) -> None:
    runbook = CORPUS / "openshift" / "NoLeadingVirtController.md"
    result = run_import(str(runbook), "-o", str(tmp_path))
    assert (result.returncode, len(result.stderr.splitlines())) == (2, 1)
    assert "is a directory" in result.stderr and "Traceback" not in result.stderr
    latin1 = tmp_path / "runbook.md"
    latin1.write_bytes("# Caf\xe9 down\n".encode("latin-1"))
    result = run_import(str(latin1))
    assert (result.returncode, len(result.stderr.splitlines())) == (2, 1)
    assert "cannot read it as UTF-8 text" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the corpus


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*/*.md"))


def test_every_corpus_file_records_its_source_and_licence() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert len(corpus_files()) >= 30
    for path in corpus_files():
        rel = path.relative_to(CORPUS).as_posix()
        row = next((line for line in readme.splitlines() if f"`{rel}`" in line), "")
        assert "Apache-2.0" in row and "github.com/" in row, rel


def test_corpus_share_of_commands_mapped_and_promql_recognised() -> None:
    expected = yaml.safe_load((CORPUS / "promql.yaml").read_text(encoding="utf-8"))
    assert set(expected) <= {p.relative_to(CORPUS).as_posix() for p in corpus_files()}
    mapped = mappable = recognised = queries = 0
    for path in corpus_files():
        rel = path.relative_to(CORPUS).as_posix()
        coverage = measure(path.read_text(encoding="utf-8"), path.name, expected.get(rel, []))
        mappable += len(coverage.mappable)
        mapped += sum(c.mapped for c in coverage.mappable)
        queries += len(coverage.queries)
        recognised += sum(q.recognised for q in coverage.queries)
        assert all(c.reason for c in coverage.commands if not c.mapped), rel
    assert mappable >= 80 and queries >= 30  # the corpus is not trivially small
    assert mapped / mappable >= 0.90, (mapped, mappable)
    assert recognised / queries >= 0.90, (recognised, queries)


# --------------------------------------------------------------------------- PromQL as written

PROMQL_AS_WRITTEN = """# ACMRemoteWriteError

## Meaning

The alert query `sum by (name)
(rate(acm_remote_write_requests_total{code!~"2.*"}[10m])) / sum by (name)
(rate(acm_remote_write_requests_total[10m])) > 0.2` means that the alert fires when
more than 20 % of the writes fail.

## Diagnosis

1. Run in the console:
   ```console
   sum by(client) (rate(metricsclient_http_requests_total{status_code!~"200"}[15m])) > 0
   ```
2. Watch the growth:
   ```bash
   # more than 10 new clones per second over 30 minutes
   rate(ocs_rbd_children_count[30m]) > 10
   ```
3. The scaler's `spec` is left alone. Always increase  by 1. This is effective when
   the pool is small.
4. Not a query: `rate(node_network_transmit_bytes_total{...}) * 8`
"""


def test_promql_in_console_blocks_and_wrapped_inline_code_is_graphed() -> None:
    graphs = [
        (g["query"], g.get("threshold")) for pb in import_playbooks(PROMQL_AS_WRITTEN) for g in pb["graphs"]
    ]
    assert sorted(graphs) == sorted(
        [
            (
                'sum by (name) (rate(acm_remote_write_requests_total{code!~"2.*"}[10m])) / sum by (name) '
                "(rate(acm_remote_write_requests_total[10m]))",
                0.2,
            ),
            ('sum by(client) (rate(metricsclient_http_requests_total{status_code!~"200"}[15m]))', 0),
            ("rate(ocs_rbd_children_count[30m])", 10),
        ]
    )  # and neither the prose line, a wrapped line alone nor the elided `{...}`
