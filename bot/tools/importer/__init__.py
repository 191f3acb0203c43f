"""Turn a markdown runbook into draft playbooks (``incidentbot playbooks import``).

`import_playbooks` reads a runbook and returns the draft playbooks as plain data;
`import_runbook` returns them as YAML with a header saying what to review. The result
always validates (`bot.config.directory.validate_dir` next to the bundled ``policy.yaml``):
anything the importer cannot turn into valid fields stays as step text.

What becomes what
    - Alerts: headings naming an alert (``### HighErrorRate``, ``## Alert: X``,
      ``#### 1. ServiceDown (P0)``), ``**Alert**: Name`` / ``Alert name: Name`` lines (or
      rows of a two-column table), front matter ``alert:``, and alerting-rule YAML (``- alert: Name`` with ``expr``,
      ``for``, ``labels.severity``, ``annotations``). Each alert gets one playbook matched
      on its name; rule YAML also gives the severity and a graph of ``expr`` (its threshold
      split off). Procedure sections that name no alert but whose title resembles an
      alert's name (``Runbook 1: Database Connection Pool Exhaustion`` for
      ``DatabaseConnectionPoolExhausted``) are attached to that alert.
    - No alert anywhere: every procedure section (symptoms/diagnosis/resolution parts, or
      numbered steps with commands) becomes an ``on_demand`` playbook.
    - Steps: numbered (or command-carrying bulleted) list items, sub-headings and bold
      labels such as "Diagnosis", "Mitigation", "Verification". The text keeps its
      markdown; fenced code stays as the step's ``code`` with its language. A code block
      made of ``# 1. ...`` / ``# 2. ...`` chunks becomes one step per chunk.
    - Graphs: ``promql`` blocks and PromQL-looking lines or inline code (selectors,
      ``rate(``, ``histogram_quantile(``, ``sum by`` ...); a trailing ``> number`` becomes
      the threshold, the unit is guessed from the metric names.
    - Remediations: recognised ``kubectl`` and ``oc`` commands (rollout restart/undo,
      scale, set env, set resources, delete pod, cordon, uncordon, drain, ``oc adm``
      cordon/uncordon/drain, create job --from=cronjob), flags in any order, become typed
      proposals; ``-n``/``--namespace`` anywhere gives the namespace (default
      ``${namespace:-default}``). ``delete pod -l app=x`` becomes a rolling restart of
      deployment ``x``, saying so. Placeholders (``$NAMESPACE``, ``${DEPLOYMENT}``,
      ``<pod-name>``, ``POD_NAME``) naming an alert label become that label
      (``$namespace``, ``$deployment``, ``$pod``); others become ``$FILL_<name>``, listed
      in the header and the proposal for the operator to fill. ``exec`` and everything
      unrecognised stay text; read-only commands (logs, rollout history, get pods/events,
      describe pod) become read-only diagnostics.

Plain-text runbooks (no fences and no ``##`` headings) are first converted to markdown:
short stand-alone lines become headings, ``Label:`` lines become labels and runs of
command-looking lines become code blocks.

Modules (each imports only those listed before it)
    text          words, titles, slugs, fitting text into template fields
    shell         command lines, the simple commands of a snippet, a code block's language
    promql        PromQL-looking text, the queries of a block, a graph's unit
    markdown      the block parser (headings, paragraphs, code, lists, tables, quotes)
    plaintext     plain-text runbooks turned into markdown
    sections      the section tree; a section's units under labels and sub-headings
    rules         Prometheus alerting rules quoted in the runbook
    alert_names   alert names and severities in headings, lines and tables
    front_matter  YAML front matter
    procedures    which lists and sections are procedures
    steps         steps from a unit's blocks
    placeholders  ``$NAMESPACE``/``<pod>`` as label templates
    validation    the model and policy checks every proposal passes
    kubectl       commands as remediations or diagnostics (`kubectl_proposal`)
    collector     a playbook's graphs, proposals and links
    document      the parsed runbook, its system and default namespace
    drafts        drafts filled from sections; on-demand drafts
    alert_drafts  drafts matched on alerts
    playbooks     drafts as playbook data (`import_playbooks`)
    yaml_output   the YAML with its review header (`import_runbook`)
    coverage      the share of a runbook's commands and PromQL that became typed parts
"""

from bot.tools.importer.kubectl import kubectl_proposal
from bot.tools.importer.playbooks import import_playbooks
from bot.tools.importer.yaml_output import import_runbook

__all__ = ["import_playbooks", "import_runbook", "kubectl_proposal"]
