{{/* Names and labels shared by every object of the chart. */}}
{{- define "geoclim.fullname" -}}
{{ .Release.Name }}
{{- end }}

{{- define "geoclim.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "geoclim.labels" -}}
{{ include "geoclim.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: forecast-service
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
