{{/* The DaemonSet's name: fullnameOverride, else the release's name when it holds the chart's, else both. */}}
{{- define "aws-eni-ip.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The selector: the manifests' since 0.1.0; a DaemonSet's selector cannot change in place. */}}
{{- define "aws-eni-ip.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
{{- end -}}

{{- define "aws-eni-ip.labels" -}}
{{ include "aws-eni-ip.selectorLabels" . }}
app.kubernetes.io/component: installer
{{- end -}}

{{- define "aws-eni-ip.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{/* Empty: the pod keeps the namespace's default ServiceAccount, as the manifests do. */}}
{{- define "aws-eni-ip.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "aws-eni-ip.fullname" .) -}}
{{- else if .Values.serviceAccount.roleArn -}}
{{- fail "serviceAccount.roleArn is set but serviceAccount.create is false: set serviceAccount.create=true, or annotate your own ServiceAccount with eks.amazonaws.com/role-arn and name it in serviceAccount.name" -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* ADDR:PORT for --metrics-bind; an IPv6 address goes in brackets. */}}
{{- define "aws-eni-ip.metricsBind" -}}
{{- $addr := .Values.agent.metricsBind | toString -}}
{{- if and (contains ":" $addr) (not (hasPrefix "[" $addr)) -}}
{{- printf "[%s]:%v" $addr (int .Values.agent.metricsPort) -}}
{{- else -}}
{{- printf "%s:%v" $addr (int .Values.agent.metricsPort) -}}
{{- end -}}
{{- end -}}

{{/* The runtime endpoint must lie inside the mounted socket directory, or the agent sees no socket. */}}
{{- define "aws-eni-ip.runtimeSocketDir" -}}
{{- $dir := .Values.runtime.socketDir | default (dir .Values.runtime.endpoint) | trimSuffix "/" -}}
{{- if not (hasPrefix (printf "%s/" $dir) .Values.runtime.endpoint) -}}
{{- fail (printf "runtime.endpoint %s is not inside runtime.socketDir %s: the agent sees only that directory of the host; set runtime.socketDir to the socket's directory" .Values.runtime.endpoint $dir) -}}
{{- end -}}
{{- $dir -}}
{{- end -}}
