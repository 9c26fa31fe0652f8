{{/*
The prefix of every object's name: the release name, with "-webmon"
appended unless it already says webmon; short enough for "-scheduler-metrics".
*/}}
{{- define "webmon.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "webmon" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-webmon" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels of a component: (list $ "operator"), or of the whole
release: (list $ ""). The name is always "webmon": the operator labels its
scheduler pods so.
*/}}
{{- define "webmon.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: webmon
app.kubernetes.io/instance: {{ $.Release.Name }}
{{- with index . 1 }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/*
Labels of a component's objects: (list $ "operator").
*/}}
{{- define "webmon.labels" -}}
{{- $ := index . 0 -}}
{{ include "webmon.selectorLabels" . }}
app.kubernetes.io/part-of: webmon
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
{{- with $.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The image of every component.
*/}}
{{- define "webmon.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/*
A component's ServiceAccount name: (list $ "operator").
*/}}
{{- define "webmon.serviceAccountName" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- (index $.Values $component).serviceAccount.name | default (printf "%s-%s" (include "webmon.fullname" $) $component) -}}
{{- end -}}

{{/*
The Secret holding the PostgreSQL connection string.
*/}}
{{- define "webmon.databaseSecret" -}}
{{- .Values.database.secretName | default (printf "%s-database" (include "webmon.fullname" .)) -}}
{{- end -}}

{{/*
Whether the components speak TLS to Kafka ("true" or "").
*/}}
{{- define "webmon.kafkaTLS" -}}
{{- if or .Values.kafka.tls.enabled .Values.kafka.tls.secretName -}}true{{- end -}}
{{- end -}}

{{/*
Checks of the values that the schema cannot express; fails with a message
naming the values at fault.
*/}}
{{- define "webmon.validate" -}}
{{- if not .Values.kafka.brokers -}}
{{- fail "kafka.brokers: give at least one Kafka bootstrap broker, host:port" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.mechanism (not .Values.kafka.sasl.secretName) -}}
{{- fail "kafka.sasl.secretName: name the Secret with the SASL username and password keys" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.secretName (not .Values.kafka.sasl.mechanism) -}}
{{- fail "kafka.sasl.mechanism: say which mechanism the kafka.sasl.secretName credentials are for (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" -}}
{{- end -}}
{{- if and .Values.kafka.tls.clientCert (not .Values.kafka.tls.secretName) -}}
{{- fail "kafka.tls.clientCert: needs kafka.tls.secretName, the Secret with ca.crt, tls.crt and tls.key" -}}
{{- end -}}
{{- $a := .Values.checker.autoscaling -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "checker.autoscaling: minReplicas (%d) is above maxReplicas (%d)" (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- if and $a.enabled (not $a.keda.enabled) (not (dig "requests" "cpu" "" .Values.checker.resources)) -}}
{{- fail "checker.resources.requests.cpu: the HPA's CPU target is a share of it; set one, or turn checker.autoscaling off" -}}
{{- end -}}
{{- if gt (int .Values.scheduler.minShards) (int .Values.scheduler.maxShards) -}}
{{- fail (printf "scheduler: minShards (%d) is above maxShards (%d)" (int .Values.scheduler.minShards) (int .Values.scheduler.maxShards)) -}}
{{- end -}}
{{- end -}}

{{/*
Kafka flags of a component that connects to Kafka itself (the checker);
the schedulers get theirs from the operator.
*/}}
{{- define "webmon.kafkaArgs" -}}
- {{ printf "--kafka-brokers=%s" (join "," .Values.kafka.brokers) | quote }}
- {{ printf "--kafka-topic=%s" .Values.kafka.topic | quote }}
- --kafka-topic-partitions={{ .Values.kafka.topicSpec.partitions }}
- --kafka-topic-replication-factor={{ .Values.kafka.topicSpec.replicationFactor }}
- --kafka-topic-retention={{ .Values.kafka.topicSpec.retention }}
{{- with .Values.kafka.version }}
- {{ printf "--kafka-version=%s" . | quote }}
{{- end }}
{{- if include "webmon.kafkaTLS" . }}
- --kafka-tls=true
{{- if .Values.kafka.tls.secretName }}
- --kafka-tls-ca-file=/etc/webmon/kafka-tls/ca.crt
{{- if .Values.kafka.tls.clientCert }}
- --kafka-tls-cert-file=/etc/webmon/kafka-tls/tls.crt
- --kafka-tls-key-file=/etc/webmon/kafka-tls/tls.key
{{- end }}
{{- end }}
{{- with .Values.kafka.tls.serverName }}
- --kafka-tls-server-name={{ . }}
{{- end }}
{{- end }}
{{- with .Values.kafka.sasl.mechanism }}
- --kafka-sasl-mechanism={{ . }}
{{- end }}
{{- end -}}

{{/*
SASL credentials as environment variables from the Secret: the password
never appears in an argument or in the pod spec.
*/}}
{{- define "webmon.kafkaEnv" -}}
{{- if .Values.kafka.sasl.mechanism }}
- name: WEBMON_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.secretName }}
      key: username
- name: WEBMON_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.secretName }}
      key: password
{{- end }}
{{- end -}}

{{/*
The flags every long-running component passes explicitly: a local runner
rewrites these addresses when it runs the pods as processes.
*/}}
{{- define "webmon.endpointArgs" -}}
- --metrics-bind-address=:8080
- --health-probe-bind-address=:8081
- {{ printf "--zap-log-level=%v" .Values.logLevel | quote }}
{{- end -}}

{{/*
Ports and probes of a long-running component's container.
*/}}
{{- define "webmon.portsAndProbes" -}}
ports:
- name: metrics
  containerPort: 8080
  protocol: TCP
- name: health
  containerPort: 8081
  protocol: TCP
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: 10
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  periodSeconds: 10
{{- end -}}

{{/*
Volumes of the Kafka TLS Secret and the database Secret: (list $ database?).
Mode 0440 with the pods' fsGroup: readable by webmon's user only.
*/}}
{{- define "webmon.volumes" -}}
{{- $ := index . 0 -}}
{{- if index . 1 }}
- name: database
  secret:
    secretName: {{ include "webmon.databaseSecret" $ }}
    defaultMode: 0440
    items:
    - key: {{ $.Values.database.secretKey }}
      path: url
{{- end }}
{{- if $.Values.kafka.tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ $.Values.kafka.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "webmon.volumeMounts" -}}
{{- $ := index . 0 -}}
{{- if index . 1 }}
- name: database
  mountPath: /etc/webmon/database
  readOnly: true
{{- end }}
{{- if $.Values.kafka.tls.secretName }}
- name: kafka-tls
  mountPath: /etc/webmon/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
The rules of the first object of a kind in a generated RBAC file (a copy
of config/rbac kept by `make chart-rbac`): (list $ "files/rbac/x.yaml" "Role").
*/}}
{{- define "webmon.generatedRules" -}}
{{- $ := index . 0 -}}
{{- $kind := index . 2 -}}
{{- $rules := list -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" ($.Files.Get (index . 1)) -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if and (eq (toString $obj.kind) $kind) (not $rules) -}}
{{- $rules = $obj.rules -}}
{{- end -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/*
The kinds of the roles in a generated RBAC file, as a YAML list.
*/}}
{{- define "webmon.generatedKinds" -}}
{{- $ := index . 0 -}}
{{- $kinds := list -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" ($.Files.Get (index . 1)) -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if has (toString $obj.kind) (list "ClusterRole" "Role") -}}
{{- $kinds = append $kinds $obj.kind -}}
{{- end -}}
{{- end -}}
{{- toYaml $kinds -}}
{{- end -}}
