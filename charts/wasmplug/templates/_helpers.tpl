{{/* Names and labels shared by every object of the release. */}}

{{- define "wasmplug.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wasmplug.operator" -}}{{ include "wasmplug.fullname" . }}-operator{{- end -}}
{{- define "wasmplug.host" -}}{{ include "wasmplug.fullname" . }}-host{{- end -}}
{{- define "wasmplug.webhook" -}}{{ include "wasmplug.fullname" . }}-webhook{{- end -}}
{{- define "wasmplug.store" -}}{{ .Values.store.existingClaim | default (printf "%s-store" (include "wasmplug.fullname" .)) }}{{- end -}}

{{- define "wasmplug.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wasmplug
{{- end -}}

{{/* Selector labels of one component: pass (list . "operator") or (list . "host"). */}}
{{- define "wasmplug.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "wasmplug.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
The environment both containers share: the engine settings the operator
compiles plugins for and the hosts run them with (one list, so that both always
agree: a host ignores precompiled code made for other settings and compiles
again), the log format, and the namespace both follow.
*/}}
{{- define "wasmplug.sharedEnv" -}}
- name: WASMPLUG_MAX_MEMORY
  value: {{ .Values.limits.maxMemory | quote }}
- name: WASMPLUG_MAX_CALL_MS
  value: {{ .Values.limits.maxCallMilliseconds | int64 | quote }}
{{- if gt (int64 .Values.limits.maxFuel) 0 }}
- name: WASMPLUG_MAX_FUEL
  value: {{ .Values.limits.maxFuel | int64 | quote }}
{{- end }}
- name: WASMPLUG_MAX_CONCURRENT_CALLS
  value: {{ .Values.limits.maxConcurrentCalls | int64 | quote }}
- name: WASMPLUG_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- with .Values.watchNamespace }}
- name: WASMPLUG_WATCH_NAMESPACE
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* ClusterRole or Role, and their bindings, depending on watchNamespace. */}}
{{- define "wasmplug.roleKind" -}}{{ if .Values.watchNamespace }}Role{{ else }}ClusterRole{{ end }}{{- end -}}
{{- define "wasmplug.roleNamespace" -}}
{{- with .Values.watchNamespace }}
  namespace: {{ . }}
{{- end }}
{{- end -}}

{{- define "wasmplug.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Cluster-scoped objects carry the release namespace, so that two releases of the same name in different namespaces do not collide. */}}
{{- define "wasmplug.clusterName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s-%s" (include "wasmplug.fullname" $root) $root.Release.Namespace (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Where FormatPlugins of this release live: the watched namespace, or the release's. */}}
{{- define "wasmplug.formatNamespace" -}}{{ .Values.watchNamespace | default .Release.Namespace }}{{- end -}}
