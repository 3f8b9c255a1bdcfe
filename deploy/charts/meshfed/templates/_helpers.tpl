{{/*
meshfed's objects keep fixed names (meshfed-hub, meshfed-agent, meshfed-gateway) in
namespace meshfed-system: `meshfedctl cluster register`, the agent's xDS serving
certificate and the hub's ConfigMap name them.
*/}}

{{- define "meshfed.namespace" -}}meshfed-system{{- end -}}

{{/* meshfed.validate fails rendering on values that cannot work. */}}
{{- define "meshfed.validate" -}}
{{- if ne .Release.Namespace "meshfed-system" -}}
{{- fail (printf "install meshfed in namespace meshfed-system (helm install --namespace meshfed-system --create-namespace), not %q: meshfedctl cluster register and the hub use that namespace" .Release.Namespace) -}}
{{- end -}}
{{- if not (or .Values.hub.enabled .Values.agent.enabled .Values.gateway.enabled) -}}
{{- fail "nothing to install: set hub.enabled, agent.enabled or gateway.enabled" -}}
{{- end -}}
{{- if and .Values.hub.enabled (gt (int .Values.hub.replicas) 1) (not .Values.hub.etcd.external.endpoints) -}}
{{- fail (printf "hub.replicas=%d needs an external etcd: set hub.etcd.external.endpoints and hub.etcd.external.secretName, or hub.replicas=1 (the embedded etcd has one member)" (int .Values.hub.replicas)) -}}
{{- end -}}
{{- if and .Values.hub.enabled .Values.hub.etcd.external.endpoints (not .Values.hub.etcd.external.secretName) -}}
{{- fail "hub.etcd.external.endpoints needs hub.etcd.external.secretName: a Secret with ca.crt, tls.crt, tls.key, client-ca.crt and client-ca.key" -}}
{{- end -}}
{{- if and .Values.image.digest (not (hasPrefix "sha256:" .Values.image.digest)) -}}
{{- fail (printf "image.digest %q: give the image's digest as sha256:<64 hex digits>" .Values.image.digest) -}}
{{- end -}}
{{- end -}}

{{- define "meshfed.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* meshfed.labels: common labels; call with (dict "ctx" $ "component" "hub"). */}}
{{- define "meshfed.labels" -}}
app.kubernetes.io/name: meshfed-{{ .component }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: meshfed
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{- end -}}

{{- define "meshfed.selector" -}}
app.kubernetes.io/name: meshfed-{{ .component }}
{{- end -}}

{{/* meshfed.podSpec: the pod settings every component shares. */}}
{{- define "meshfed.podCommon" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
{{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* meshfed.container: image, security context, resources and GOMEMLIMIT. */}}
{{- define "meshfed.containerCommon" -}}
image: {{ include "meshfed.image" .ctx }}
imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
securityContext:
{{- toYaml .ctx.Values.containerSecurityContext | nindent 2 }}
resources:
{{- toYaml .values.resources | nindent 2 }}
{{- end -}}

{{/* meshfed.gomemlimit: the Go runtime's soft memory limit follows the container's. */}}
{{- define "meshfed.gomemlimit" -}}
{{- if and .values.resources.limits .values.resources.limits.memory }}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end }}
{{- end -}}
