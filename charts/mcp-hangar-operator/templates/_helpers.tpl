{{/* The operator's name: the release name, with the chart's name when the release does not carry it. */}}
{{- define "hangar.operator" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Core's name: "mcp-hangar-core" for the release "mcp-hangar-operator", as the guide's URLs expect. */}}
{{- define "hangar.core" -}}
{{- printf "%s-core" (include "hangar.operator" . | trimSuffix "-operator") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hangar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret with core's admin API key: the user's, or the one this chart makes. */}}
{{- define "hangar.secret" -}}
{{- default (printf "%s-credentials" (include "hangar.operator" .)) .Values.hangar.existingSecret -}}
{{- end -}}

{{/* Core's URL as the operator uses it: hangar.url, else the core of this release, else none. */}}
{{- define "hangar.url" -}}
{{- if .Values.hangar.url -}}
{{- .Values.hangar.url -}}
{{- else if .Values.core.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "hangar.core" .) .Release.Namespace (int .Values.core.port) -}}
{{- end -}}
{{- end -}}

{{- define "hangar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mcp-hangar
{{- end -}}

{{/* The pod security context of both Deployments: non-root, no privilege, read-only root. */}}
{{- define "hangar.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "hangar.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* OpenTelemetry's standard variables for traces (none unless telemetry.otlp.endpoint is set),
     and the audit log to stdout; `service` names the process in traces. */}}
{{- define "hangar.telemetryEnv" -}}
{{- $t := .root.Values.telemetry -}}
{{- if $t.otlp.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.otlp.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $t.otlp.protocol | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
{{- with $t.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=%s%s" .root.Release.Namespace (ternary "" (printf ",%s" $t.resourceAttributes) (empty $t.resourceAttributes)) | quote }}
{{- end }}
{{- if .root.Values.audit.enabled }}
- name: HANGAR_AUDIT
  value: stdout
{{- end }}
{{- end -}}
