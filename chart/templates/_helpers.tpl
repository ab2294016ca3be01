{{/* Names: at most 63 characters, the DNS label limit. */}}
{{- define "qalby.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "qalby.fullname" -}}
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

{{- define "qalby.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qalby.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server's pods only: the migration job's pods must not join the Service or the budget. */}}
{{- define "qalby.serverSelector" -}}
{{ include "qalby.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "qalby.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "qalby.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "qalby.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Host names Django accepts: the Service's DNS names, the Ingress hosts and allowedHosts. */}}
{{- define "qalby.allowedHosts" -}}
{{- $service := include "qalby.fullname" . }}
{{- $hosts := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.%s" $service .Release.Namespace .Values.clusterDomain) }}
{{- if .Values.ingress.enabled }}
{{- range .Values.ingress.hosts }}
{{- $hosts = append $hosts .host }}
{{- end }}
{{- end }}
{{- concat $hosts .Values.allowedHosts | uniq | join "," }}
{{- end }}

{{/*
The settings every container gets (a YAML map of strings): the operator's `config` plus what the
chart decides itself. Secrets and chart-owned names are refused in `config` with a message saying
where they belong.
*/}}
{{- define "qalby.settings" -}}
{{- $secrets := list "DATABASE_URL" "REDIS_URL" "SECRET_KEY" "QALBY_ENCRYPTION_KEYS" "QALBY_METRICS_TOKEN" "LOGFIRE_WRITE_TOKEN" }}
{{- $owned := dict "DEBUG" "the chart always runs in production mode" "HOST" "set by the chart" "PORT" "set containerPort instead" "ALLOWED_HOSTS" "set allowedHosts (or ingress.hosts) instead" "QALBY_LOG_FLUSH_SECONDS" "set gracefulShutdown.logFlushSeconds instead" "QALBY_SHUTDOWN_GRACE_SECONDS" "set gracefulShutdown.drainSeconds instead" }}
{{- range $key, $value := .Values.config }}
{{- $bare := trimSuffix "_FILE" $key }}
{{- if or (has $bare $secrets) (regexMatch "(_TOKEN|_KEY|_KEYS|_PASSWORD|_SECRET)$" $bare) }}
{{- fail (printf "config.%s is a secret: put it in a Secret and name that Secret in the chart's `secrets` values" $key) }}
{{- end }}
{{- if hasKey $owned $key }}
{{- fail (printf "config.%s cannot be set: %s" $key (get $owned $key)) }}
{{- end }}
{{- end }}
{{- $settings := dict }}
{{- range $key, $value := .Values.config }}
{{- $_ := set $settings $key (toString $value) }}
{{- end }}
{{- $_ := set $settings "DEBUG" "0" }}
{{- $_ := set $settings "HOST" "0.0.0.0" }}
{{- $_ := set $settings "PORT" (toString .Values.containerPort) }}
{{- $_ := set $settings "ALLOWED_HOSTS" (include "qalby.allowedHosts" .) }}
{{- $_ := set $settings "QALBY_LOG_FLUSH_SECONDS" (toString .Values.gracefulShutdown.logFlushSeconds) }}
{{- $_ := set $settings "QALBY_SHUTDOWN_GRACE_SECONDS" (toString .Values.gracefulShutdown.drainSeconds) }}
{{- toYaml $settings }}
{{- end }}

{{/*
The secrets, as a list of {env, name, key}: env is the variable the app reads (through env_FILE),
name the Secret, key the entry in it. A required one with no Secret named stops rendering.
*/}}
{{- define "qalby.secretRefs" -}}
{{- $s := .Values.secrets }}
{{- $refs := list }}
{{- range $env, $value := dict "DATABASE_URL" $s.databaseUrl "SECRET_KEY" $s.secretKey "QALBY_ENCRYPTION_KEYS" $s.encryptionKeys }}
{{- $name := default $s.existingSecret $value.name }}
{{- if not $name }}
{{- fail (printf "no Secret named for %s: set secrets.existingSecret (one Secret holding every key) or the `name` of this entry under secrets" $env) }}
{{- end }}
{{- $refs = append $refs (dict "env" $env "name" $name "key" $value.key) }}
{{- end }}
{{- if $s.redisUrl.enabled }}
{{- $name := default $s.existingSecret $s.redisUrl.name }}
{{- if not $name }}
{{- fail "secrets.redisUrl is enabled but no Secret is named: set secrets.redisUrl.name or secrets.existingSecret" }}
{{- end }}
{{- $refs = append $refs (dict "env" "REDIS_URL" "name" $name "key" $s.redisUrl.key) }}
{{- end }}
{{- range $s.extra }}
{{- $refs = append $refs (dict "env" .env "name" .name "key" .key) }}
{{- end }}
{{- toYaml (dict "refs" $refs) }}
{{- end }}

{{/* Volumes of every pod: the secrets as files, and a small writable /tmp. */}}
{{- define "qalby.volumes" -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- range (include "qalby.secretRefs" . | fromYaml).refs }}
      - secret:
          name: {{ .name }}
          items:
            - key: {{ .key }}
              path: {{ .env }}
      {{- end }}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: {{ include "qalby.tmpSizeLimit" . }}
{{- end }}

{{/*
The size of /tmp: tmpSizeLimit, or enough for one transcription upload of the largest size in
flight (two copies, values.yaml says which) while another arrives: 4 x its body (base64 JSON: 4/3 of
QALBY_MAX_AUDIO_BYTES plus 64 KiB, as QALBY_BODY_LIMITS in settings.py) plus 64Mi, in whole MiB.
*/}}
{{- define "qalby.tmpSizeLimit" -}}
{{- if .Values.tmpSizeLimit }}
{{- .Values.tmpSizeLimit }}
{{- else }}
{{- $audio := int64 (default "26214400" .Values.config.QALBY_MAX_AUDIO_BYTES) }}
{{- $body := add (div (mul $audio 4) 3) 65536 }}
{{- $bytes := add (mul $body 4) (mul 64 1048576) }}
{{- printf "%dMi" (div (add $bytes 1048575) 1048576) }}
{{- end }}
{{- end }}

{{- define "qalby.volumeMounts" -}}
- name: secrets
  mountPath: /run/secrets/qalby
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Each secret's NAME_FILE variable (qalby_site/env.py reads the file in place of NAME). */}}
{{- define "qalby.secretEnv" -}}
{{- range (include "qalby.secretRefs" . | fromYaml).refs }}
- name: {{ .env }}_FILE
  value: /run/secrets/qalby/{{ .env }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod-level fields the server and the migration job share. */}}
{{- define "qalby.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
NetworkPolicy `to` peers: every IPv4 and IPv6 address except the given CIDRs and, always, the cloud
metadata service, which hands out the node's credentials to whoever asks.
*/}}
{{- define "qalby.anywhereBut" -}}
{{- $v4 := list "169.254.169.254/32" }}
{{- $v6 := list "fd00:ec2::254/128" }}
{{- range . }}
{{- if contains ":" . }}
{{- $v6 = append $v6 . }}
{{- else }}
{{- $v4 = append $v4 . }}
{{- end }}
{{- end }}
- ipBlock:
    cidr: 0.0.0.0/0
    except:
      {{- toYaml $v4 | nindent 6 }}
- ipBlock:
    cidr: "::/0"
    except:
      {{- toYaml $v6 | nindent 6 }}
{{- end }}
