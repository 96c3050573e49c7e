{{/* The release's name for a component: <release>-sessionfold-<component>. */}}
{{- define "sessionfold.name" -}}
{{- printf "%s-sessionfold-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "sessionfold.labels" -}}
app.kubernetes.io/name: sessionfold
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* The labels a component's selector matches. */}}
{{- define "sessionfold.selector" -}}
app.kubernetes.io/name: sessionfold
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod annotations: scraping, and a checksum so a changed config restarts the pods. */}}
{{- define "sessionfold.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
{{- if .root.Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* The environment every service reads beside the shared ConfigMap. */}}
{{- define "sessionfold.env" -}}
- name: SESSIONFOLD_LISTEN
  value: {{ printf "0.0.0.0:%v" .port | quote }}
{{- if .root.Values.kafka.propertiesSecret }}
- name: SESSIONFOLD_KAFKA_PROPERTIES_FILE
  value: /etc/sessionfold/kafka-secret/kafka.properties
{{- end }}
{{- end -}}

{{/* The environment of the services that check tokens. */}}
{{- define "sessionfold.authEnv" -}}
{{- $a := .root.Values.auth }}
{{- if $a.jwtSecret.existingSecret }}
- name: SESSIONFOLD_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $a.jwtSecret.existingSecret }}
      key: {{ $a.jwtSecret.key }}
{{- end }}
{{- end -}}

{{/* Volumes every pod mounts: the Kafka secrets and TLS files, /tmp. */}}
{{- define "sessionfold.volumes" -}}
{{- if .root.Values.kafka.propertiesSecret }}
- name: kafka-secret
  secret:
    secretName: {{ .root.Values.kafka.propertiesSecret }}
    items:
      - key: kafka.properties
        path: kafka.properties
{{- end }}
{{- if .root.Values.kafka.tlsSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .root.Values.kafka.tlsSecret }}
{{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "sessionfold.volumeMounts" -}}
{{- if .root.Values.kafka.propertiesSecret }}
- name: kafka-secret
  mountPath: /etc/sessionfold/kafka-secret
  readOnly: true
{{- end }}
{{- if .root.Values.kafka.tlsSecret }}
- name: kafka-tls
  mountPath: /etc/sessionfold/kafka-tls
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Liveness on /healthz, readiness on /readyz. */}}
{{- define "sessionfold.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 30
{{- end -}}

{{/* A retention as Kafka's retention.ms: <n>d, <n>h or forever (-1). */}}
{{- define "sessionfold.retentionMs" -}}
{{- if eq . "forever" -}}-1
{{- else if regexMatch "^[0-9]+d$" . -}}{{ mul (trimSuffix "d" . | atoi) 86400000 }}
{{- else if regexMatch "^[0-9]+h$" . -}}{{ mul (trimSuffix "h" . | atoi) 3600000 }}
{{- else -}}{{ fail (printf "topics retention %q: write it as <n>d, <n>h or forever" .) }}
{{- end -}}
{{- end -}}
