{{/* Chart name, optionally overridden. */}}
{{- define "incidentbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters. */}}
{{- define "incidentbot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "incidentbot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "incidentbot.labels" -}}
helm.sh/chart: {{ include "incidentbot.chart" . }}
{{ include "incidentbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "incidentbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "incidentbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "incidentbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "incidentbot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "incidentbot.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret the pods read: the existing one, or the chart's. */}}
{{- define "incidentbot.secretName" -}}
{{- default (include "incidentbot.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Secret keys and whether the bot can start without them. */}}
{{- define "incidentbot.secretKeys" -}}
SLACK_BOT_TOKEN: required
SLACK_SIGNING_SECRET: optional
SLACK_APP_TOKEN: optional
ALERTMANAGER_WEBHOOK_TOKEN: required
DATABASE_URL: required
REDIS_URL: required
PAGERDUTY_API_TOKEN: optional
PAGERDUTY_WEBHOOK_SECRET: optional
PAGERDUTY_ROUTING_KEY: optional
{{- end }}

{{/* Secret data from values: the non-empty entries, base64-encoded. */}}
{{- define "incidentbot.secretData" -}}
{{- range $key, $value := .Values.secrets.values }}
{{- if $value }}
{{ $key }}: {{ $value | toString | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Environment of the bot's containers. Call with (dict "root" $ "secretName" NAME "migrate" BOOL).
Optional keys use `optional: true`, so a Secret without them leaves the variable unset.
The migration Job (migrate=true) gets no PLAYBOOKS_DIR: it does not read playbooks, and the
ConfigMap does not exist yet when a pre-install hook runs.
*/}}
{{- define "incidentbot.env" -}}
{{- $root := .root }}
{{- $secretName := .secretName }}
{{- $migrate := .migrate }}
{{- range $key, $need := include "incidentbot.secretKeys" $root | fromYaml }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $key }}
      optional: {{ eq $need "optional" }}
{{- end }}
{{- range $key, $value := $root.Values.env }}
{{- if not (kindIs "invalid" $value) }}
{{- if ne (toString $value) "" }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
- name: HTTP_PORT
  value: {{ $root.Values.containerPort | toString | quote }}
{{- if and $root.Values.playbooks.override (not $migrate) }}
- name: PLAYBOOKS_DIR
  value: {{ $root.Values.playbooks.mountPath | quote }}
{{- end }}
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: REPLICA_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The investigator's settings (nothing while investigator.baseUrl is empty); the API key is a file
from the Secret mounted at investigator.mountPath, never an environment variable.
*/}}
{{- define "incidentbot.investigatorEnv" -}}
{{- with .Values.investigator }}
{{- if .baseUrl }}
- name: LLM_BASE_URL
  value: {{ .baseUrl | quote }}
- name: LLM_MODEL
  value: {{ .model | quote }}
{{- if .apiKeySecret.name }}
- name: LLM_API_KEY_FILE
  value: {{ printf "%s/api-key" .mountPath | quote }}
{{- end }}
{{- $settings := dict "LLM_TOKEN_BUDGET" .tokenBudget "LLM_TIME_BUDGET_SECONDS" .timeBudgetSeconds "LLM_MAX_TOOL_CALLS" .maxToolCalls "LLM_MAX_CONCURRENT" .maxConcurrent "LLM_REQUEST_TIMEOUT_SECONDS" .requestTimeoutSeconds "LLM_PROBE_INTERVAL_SECONDS" .probeIntervalSeconds "LLM_COST_PER_MILLION_TOKENS" .costPerMillionTokens "LLM_AUTO_INVESTIGATE" .autoInvestigate "LLM_REDACT_EMAILS" .redactEmails "LLM_DISABLED" .disabled }}
{{- range $name := keys $settings | sortAlpha }}
{{- $value := index $settings $name }}
{{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
