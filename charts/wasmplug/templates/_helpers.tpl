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
{{- define "wasmplug.artifacts" -}}{{ include "wasmplug.fullname" . }}-artifacts{{- end -}}
{{/* The artifact server's URL as hosts reach it: by its Service's DNS name,
or by operator.artifacts.clusterIP when set. */}}
{{- define "wasmplug.artifactsURL" -}}
http://{{ .Values.operator.artifacts.clusterIP | default (printf "%s.%s.svc" (include "wasmplug.artifacts" .) .Release.Namespace) }}:{{ .Values.operator.artifacts.port }}
{{- end -}}
{{/* Whether hosts download packages from the operator (store.mode http). */}}
{{- define "wasmplug.httpStore" -}}{{ if eq .Values.store.mode "http" }}true{{ end }}{{- end -}}
{{/* The projected token pods download artifacts with, as a volume. */}}
{{- define "wasmplug.artifactTokenVolume" -}}
- name: artifact-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ .Values.operator.artifacts.tokenAudience }}
          expirationSeconds: 3600
          path: token
{{- end -}}
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

{{/* A size (1Gi, 512Mi, 64Ki, 1G, 500M, 1048576) in bytes, as an integer. */}}
{{- define "wasmplug.bytes" -}}
{{- $text := toString . -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $bytes := "" -}}
{{- range $suffix := list "Ki" "Mi" "Gi" "Ti" "k" "M" "G" "T" -}}
{{- if and (not $bytes) (hasSuffix $suffix $text) -}}
{{- $bytes = mul (trimSuffix $suffix $text | int64) (get $units $suffix) | toString -}}
{{- end -}}
{{- end -}}
{{- default ($text | int64 | toString) $bytes -}}
{{- end -}}

{{/*
Refuses a host memory limit below what its calls may use (docs/operations.md,
"Sizing a host"): 192Mi for the process and its loaded plugins, plus, for each
concurrent call, the call's memory and a request body, plus what warm instance
slots keep resident between calls (the call slots and 4 load slots, and the
large-call slots).
*/}}
{{- define "wasmplug.checkHostMemory" -}}
{{- with .Values.host.resources.limits }}{{ with .memory }}
{{- $limit := include "wasmplug.bytes" . | int64 -}}
{{- $calls := $.Values.limits.maxConcurrentCalls | int64 -}}
{{- $perCall := add (include "wasmplug.bytes" $.Values.limits.maxMemory | int64) (include "wasmplug.bytes" $.Values.host.maxBody | int64) -}}
{{- $large := $.Values.host.largeCalls -}}
{{- $largeSlots := $large.slots | int64 -}}
{{- $resident := add (mul (add $calls 4) (include "wasmplug.bytes" $.Values.host.keepResident | int64)) (mul $largeSlots (include "wasmplug.bytes" $large.keepResident | int64)) -}}
{{- $needed := add 201326592 (mul $calls $perCall) $resident -}}
{{- if lt $limit $needed -}}
{{- fail (printf "host.resources.limits.memory (%s) is below what a host may use: 192Mi + limits.maxConcurrentCalls (%d) × (limits.maxMemory (%s) + host.maxBody (%s)) + (%d + 4) × host.keepResident (%s) + host.largeCalls.slots (%d) × host.largeCalls.keepResident (%s) = %dMi; raise the limit or lower those values" (toString .) $calls (toString $.Values.limits.maxMemory) (toString $.Values.host.maxBody) $calls (toString $.Values.host.keepResident) $largeSlots (toString $large.keepResident) (div $needed 1048576)) -}}
{{- end -}}
{{- end }}{{ end -}}
{{- end -}}

{{/* Egress every component needs: DNS, and the API server (its address is not
known to the chart; networkPolicy.apiServer names its ports and, if set, its
addresses). */}}
{{- define "wasmplug.egressToCluster" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
- ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  {{- with .Values.networkPolicy.apiServer.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Egress to the operators' artifact server (store.mode http): hosts
download from it, replicas mirror each other. */}}
{{- define "wasmplug.egressToArtifacts" -}}
{{- if include "wasmplug.httpStore" . }}
- ports:
    - {port: {{ .Values.operator.artifacts.port }}, protocol: TCP}
  to:
    - podSelector:
        matchLabels:
          {{- include "wasmplug.selector" (list . "operator") | nindent 10 }}
{{- end }}
{{- end -}}

{{/* Refuses an operator memory limit below what one operator may hold: a
base for the process and a compilation, plus each concurrent fetch's
download and unpacked files. */}}
{{- define "wasmplug.checkOperatorMemory" -}}
{{- with .Values.operator.resources.limits }}{{ with .memory }}
{{- $limit := include "wasmplug.bytes" . | int64 -}}
{{- $fetches := $.Values.operator.maxConcurrentFetches | int64 -}}
{{- $perFetch := add (include "wasmplug.bytes" $.Values.operator.maxDownload | int64) (include "wasmplug.bytes" $.Values.operator.maxUnpacked | int64) -}}
{{- $needed := add 268435456 (mul $fetches $perFetch) -}}
{{- if lt $limit $needed -}}
{{- fail (printf "operator.resources.limits.memory (%s) is below what the operator may use: 256Mi + operator.maxConcurrentFetches (%d) × (operator.maxDownload (%s) + operator.maxUnpacked (%s)) = %dMi; raise the limit or lower those values" (toString .) $fetches (toString $.Values.operator.maxDownload) (toString $.Values.operator.maxUnpacked) (div $needed 1048576)) -}}
{{- end -}}
{{- end }}{{ end -}}
{{- end -}}
