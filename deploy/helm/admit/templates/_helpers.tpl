{{/* Names, labels and the pieces the three services share. */}}

{{- define "admit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "admit.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "admit.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "admit.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "admit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "admit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: admit
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "account"). */}}
{{- define "admit.selector" -}}
app.kubernetes.io/name: {{ include "admit.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "admit.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "admit.secretName" -}}
{{- if .Values.secrets.create -}}
{{- include "admit.fullname" . -}}
{{- else -}}
{{- required "secrets.existingSecret: name a Secret with the platform's credentials, or set secrets.create" .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* One ADMIT__… variable from a key of the credentials Secret. */}}
{{- define "admit.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "admit.secretName" .root }}
      key: {{ index .root.Values.secrets.keys .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/*
The settings file: the operator's `config` with the chart's own keys (bind address and
ports) on top. Secrets never go here.
*/}}
{{- define "admit.config" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) -}}
{{- $_ := set $cfg "bind" "0.0.0.0" -}}
{{- range $svc := list "account" "oauth" "mailer" -}}
{{- $section := deepCopy (default (dict) (index $cfg $svc)) -}}
{{- $_ := set $section "port" (index $.Values $svc "port") -}}
{{- $_ := set $cfg $svc $section -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds of a component: the preStop sleep, the readiness grace,
the drain (for the mailer: the longer of the drain and one SMTP send), and a margin.
*/}}
{{- define "admit.terminationGrace" -}}
{{- $s := .root.Values.shutdown -}}
{{- $graceSecs := div (add (int $s.readinessGraceMs) 999) 1000 -}}
{{- $drain := int $s.drainSeconds -}}
{{- if eq .component "mailer" -}}
{{- $smtp := 30 -}}
{{- with .root.Values.config.mailer -}}{{- with .smtp -}}{{- if .timeout_secs -}}{{- $smtp = int .timeout_secs -}}{{- end -}}{{- end -}}{{- end -}}
{{- $drain = max $drain $smtp -}}
{{- end -}}
{{- add (int $s.preStopSleepSeconds) $graceSecs $drain (int $s.marginSeconds) -}}
{{- end -}}
