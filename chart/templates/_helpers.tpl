{{/* Names */}}
{{- define "tew.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tew.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tew.labels" -}}
app.kubernetes.io/name: {{ include "tew.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "tew.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tew.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tew.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tew.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tew.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "tew.secretName" -}}
{{- default (printf "%s-secrets" (include "tew.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* An env var from the chart's Secret. Args: (list $ "ENV_NAME" "keyField" optional) */}}
{{- define "tew.secretEnv" -}}
{{- $ := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "tew.secretName" $ }}
      key: {{ index $.Values.secrets.keys (index . 2) }}
      {{- if index . 3 }}
      optional: true
      {{- end }}
{{- end -}}

{{/* Non-secret configuration shared by the worker and the admin API. */}}
{{- define "tew.configEnv" -}}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: DB_POOL_MAX
  value: {{ int .Values.config.dbPoolMax | quote }}
- name: DB_POOL_WAIT_MS
  value: {{ int .Values.config.dbPoolWaitMs | quote }}
- name: PROVIDER_TIMEOUT_MS
  value: {{ int .Values.config.providerTimeoutMs | quote }}
- name: CLAIM_LEASE_SECONDS
  value: {{ int .Values.config.claimLeaseSeconds | quote }}
- name: OUTPUT_MAX_CHARS
  value: {{ int .Values.config.outputMaxChars | quote }}
- name: SENDER_DOMAIN_POLICY
  value: {{ .Values.config.senderDomainPolicy | quote }}
- name: GLOBAL_DAILY_LIMIT
  value: {{ int .Values.config.globalDailyLimit | quote }}
- name: EVENT_TYPES
  value: {{ join "," .Values.eventing.eventTypes | quote }}
- name: SHUTDOWN_GRACE_MS
  value: {{ int .Values.worker.shutdownGraceMs | quote }}
- name: REPLY_EVENTS
  value: {{ .Values.config.replyEvents | toString | quote }}
- name: ALLOW_PRIVATE_SMTP_HOSTS
  value: {{ .Values.config.allowPrivateSmtpHosts | toString | quote }}
{{- with .Values.config.smtpAllowedHosts }}
- name: SMTP_ALLOWED_HOSTS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.config.metricsTenantLabels }}
- name: METRICS_TENANT_LABELS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.config.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.emailTenantFromPattern }}
- name: EMAIL_TENANT_FROM_PATTERN
  value: {{ . | quote }}
{{- end }}
- name: BROKER_URL
  value: {{ include "tew.brokerUrl" . | quote }}
{{- if eq .Values.database.pooler "pgbouncer" }}
- name: DB_POOLER
  value: pgbouncer
{{- end }}
{{- with .Values.config.providersDisabled }}
- name: PROVIDERS_DISABLED
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.config.publicBaseUrl }}
- name: PUBLIC_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- range $k, $v := .Values.config.extraEnv }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- range $k, $v := .Values.config.extraSecretEnv }}
- name: {{ $k }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.name }}
      key: {{ $v.key }}
{{- end }}
{{ include "tew.secretEnv" (list . "DB_ENCRYPTION_KEY" "encryptionKey" false) }}
{{ include "tew.secretEnv" (list . "DB_ENCRYPTION_KEY_PREVIOUS" "previousEncryptionKey" true) }}
{{- end -}}

{{/* The restricted container security context (Pod Security Standards "restricted"). */}}
{{- define "tew.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Database connections at full scale: every worker pod's pool, the admin API's, the migration Job's one. */}}
{{- define "tew.connectionBudget" -}}
{{- $pool := int .Values.config.dbPoolMax -}}
{{- $admin := ternary (mul (int .Values.admin.replicas) $pool) 0 .Values.admin.enabled -}}
{{- add (mul (int .Values.worker.autoscaling.maxScale) $pool) $admin (ternary 1 0 .Values.migrations.enabled) (include "tew.cronJobConnections" .) -}}
{{- end -}}

{{/* The dead-letter CronJobs' connections: the CLI opens at most 2, one job of each at a time. */}}
{{- define "tew.cronJobConnections" -}}
{{- $dls := .Values.eventing.deadLetterSink -}}
{{- $on := and .Values.eventing.enabled $dls.store (not $dls.uri) (not $dls.ref) -}}
{{- add (ternary 2 0 (and $on .Values.deadLetters.purge.enabled)) (ternary 2 0 (and $on .Values.deadLetters.replayQuota.enabled)) -}}
{{- end -}}

{{/* Where dead letters are replayed: eventing.deadLetterSink.brokerUrl, else the MT broker's ingress. */}}
{{- define "tew.brokerUrl" -}}
{{- .Values.eventing.deadLetterSink.brokerUrl | default (printf "http://broker-ingress.knative-eventing.svc.cluster.local/%s/%s" .Release.Namespace .Values.eventing.broker) -}}
{{- end -}}

{{/*
How long the broker keeps retrying an event, in seconds: the sum of the waits between attempts
(Knative: exponential backoffDelay × 2^n, linear backoffDelay × (n+1)), attempts' own time left out.
*/}}
{{- define "tew.retryHorizonSeconds" -}}
{{- $d := .Values.eventing.delivery -}}
{{- $h := regexFind "[0-9.]+H" $d.backoffDelay | trimSuffix "H" | default "0" | float64 -}}
{{- $m := regexFind "[0-9.]+M" $d.backoffDelay | trimSuffix "M" | default "0" | float64 -}}
{{- $s := regexFind "[0-9.]+S" $d.backoffDelay | trimSuffix "S" | default "0" | float64 -}}
{{- $delay := addf (mulf $h 3600) (mulf $m 60) $s -}}
{{- $total := 0.0 -}}
{{- $step := $delay -}}
{{- range $n := until (int $d.retry) -}}
{{- if eq $d.backoffPolicy "linear" -}}
{{- $total = addf $total (mulf $delay (add1 $n)) -}}
{{- else -}}
{{- $total = addf $total $step -}}
{{- $step = mulf $step 2 -}}
{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* The events a pod's pool serves at once: config.dbPoolMax × worker.eventsPerConnection. */}}
{{- define "tew.poolEvents" -}}
{{- mul (int .Values.config.dbPoolMax) (int .Values.worker.eventsPerConnection) -}}
{{- end -}}

{{/* Requests one pod admits at once: worker.containerConcurrency, or with 0 sized to the pool (and within worker.maxInFlightEvents). */}}
{{- define "tew.containerConcurrency" -}}
{{- if gt (int .Values.worker.containerConcurrency) 0 -}}
{{- int .Values.worker.containerConcurrency -}}
{{- else -}}
{{- min (int (include "tew.poolEvents" .)) (int .Values.worker.maxInFlightEvents) -}}
{{- end -}}
{{- end -}}

{{/* Settings that contradict each other fail the render with the reason. */}}
{{- define "tew.validate" -}}
{{- $w := .Values.worker -}}
{{- $d := .Values.eventing.delivery -}}
{{- $max := int .Values.database.maxConnections -}}
{{- if gt $max 0 -}}
{{- $budget := int (include "tew.connectionBudget" .) -}}
{{- $room := sub $max (int .Values.database.reservedConnections) -}}
{{- if gt $budget $room -}}
{{- fail (printf "connection budget: worker.autoscaling.maxScale (%d) × config.dbPoolMax (%d)%s%s = %d connections, more than database.maxConnections (%d) − database.reservedConnections (%d) = %d. Lower maxScale or dbPoolMax, raise max_connections, or put a pooler in front and set database.maxConnections to its max_client_conn (0 skips this check)" (int $w.autoscaling.maxScale) (int .Values.config.dbPoolMax) (ternary (printf " + admin.replicas (%d) × %d" (int .Values.admin.replicas) (int .Values.config.dbPoolMax)) "" .Values.admin.enabled) (printf "%s%s" (ternary " + 1 (migration Job)" "" .Values.migrations.enabled) (ternary (printf " + %s (dead-letter CronJobs)" (include "tew.cronJobConnections" .)) "" (gt (int (include "tew.cronJobConnections" .)) 0))) $budget $max (int .Values.database.reservedConnections) $room) -}}
{{- end -}}
{{- end -}}
{{- $horizon := include "tew.retryHorizonSeconds" . | float64 -}}
{{- if and .Values.eventing.enabled (le $horizon (float64 .Values.config.claimLeaseSeconds)) -}}
{{- fail (printf "eventing.delivery: the broker's retries span %v s (retry %d, %s from %s), which must outlast config.claimLeaseSeconds (%d): an event whose attempt crashed stays claimed for the lease, and only a retry after it sends the event; with fewer, the event is dead-lettered unsent. Raise retry or backoffDelay, or lower claimLeaseSeconds" $horizon (int $d.retry) $d.backoffPolicy $d.backoffDelay (int .Values.config.claimLeaseSeconds)) -}}
{{- end -}}
{{- if .Values.config.replyEvents -}}
{{- range .Values.eventing.eventTypes -}}
{{- if hasPrefix "codetether.email." . -}}
{{- fail (printf "config.replyEvents is on and eventing.eventTypes includes %s: the worker would receive its own replies" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if ge (int $d.timeoutSeconds) (int $w.timeoutSeconds) -}}
{{- fail (printf "eventing.delivery.timeoutSeconds (%d) must be below worker.timeoutSeconds (%d): the broker must give up on an attempt before Knative cuts the request" (int $d.timeoutSeconds) (int $w.timeoutSeconds)) -}}
{{- end -}}
{{- if gt (mul (int .Values.config.providerTimeoutMs) 2) (mul (int $d.timeoutSeconds) 1000) -}}
{{- fail (printf "config.providerTimeoutMs (%d) × 2 (primary and fallback) must fit in eventing.delivery.timeoutSeconds (%d s)" (int .Values.config.providerTimeoutMs) (int $d.timeoutSeconds)) -}}
{{- end -}}
{{- $minLease := div (add (int .Values.config.providerTimeoutMs) 3999) 1000 -}}
{{- if lt (int .Values.config.claimLeaseSeconds) (int $minLease) -}}
{{- fail (printf "config.claimLeaseSeconds (%d) is too short for config.providerTimeoutMs (%d): the worker starts a send only while it can end 2 s before the claim's lease does, and would refuse to start (it needs at least %d)" (int .Values.config.claimLeaseSeconds) (int .Values.config.providerTimeoutMs) (int $minLease)) -}}
{{- end -}}
{{- if gt (int $w.shutdownGraceMs) (mul (int $w.timeoutSeconds) 1000) -}}
{{- fail (printf "worker.shutdownGraceMs (%d) must be at most worker.timeoutSeconds (%d s), Knative's termination grace" (int $w.shutdownGraceMs) (int $w.timeoutSeconds)) -}}
{{- end -}}
{{- $perPool := int (include "tew.poolEvents" .) -}}
{{- if gt (int $w.containerConcurrency) $perPool -}}
{{- fail (printf "worker.containerConcurrency (%d) is more than the pod's pool serves: config.dbPoolMax (%d) × worker.eventsPerConnection (%d) = %d. Leave containerConcurrency at 0 (sized to the pool), lower it, or raise dbPoolMax (counted against database.maxConnections)" (int $w.containerConcurrency) (int .Values.config.dbPoolMax) (int $w.eventsPerConnection) $perPool) -}}
{{- end -}}
{{- if gt (int (include "tew.containerConcurrency" .)) (int $w.maxInFlightEvents) -}}
{{- fail (printf "worker.containerConcurrency (%s) must be at most worker.maxInFlightEvents (%d)" (include "tew.containerConcurrency" .) (int $w.maxInFlightEvents)) -}}
{{- end -}}
{{- if gt (int $w.autoscaling.minScale) (int $w.autoscaling.maxScale) -}}
{{- fail "worker.autoscaling.minScale must be at most maxScale" -}}
{{- end -}}
{{- if and .Values.eventing.enabled (not .Values.eventing.deadLetterSink.uri) (not .Values.eventing.deadLetterSink.ref) (not .Values.eventing.deadLetterSink.store) -}}
{{- fail "eventing.deadLetterSink: set uri or ref, or turn store on — without a dead letter sink Knative drops events after the last retry" -}}
{{- end -}}
{{- if and .Values.eventing.deadLetterSink.uri .Values.eventing.deadLetterSink.ref -}}
{{- fail "eventing.deadLetterSink: set uri or ref, not both" -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $_ := required "secrets.values.databaseUrl is required without secrets.existingSecret" .Values.secrets.values.databaseUrl -}}
{{- $_ := required "secrets.values.encryptionKey is required without secrets.existingSecret" .Values.secrets.values.encryptionKey -}}
{{- if lt (len .Values.secrets.values.encryptionKey) 32 -}}
{{- fail "secrets.values.encryptionKey must be at least 32 characters (tenant-email keys generate)" -}}
{{- end -}}
{{- if .Values.migrations.enabled -}}
{{- $_ := required "secrets.values.migrationDatabaseUrl is required for the migration Job without secrets.existingSecret" .Values.secrets.values.migrationDatabaseUrl -}}
{{- end -}}
{{- if and .Values.admin.enabled .Values.admin.databaseRole -}}
{{- $_ := required "secrets.values.adminDatabaseUrl is required with admin.databaseRole without secrets.existingSecret: the admin API connects as that role" .Values.secrets.values.adminDatabaseUrl -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int (include "tew.cronJobConnections" .)) 0) (not .Values.secrets.existingSecret) (not .Values.secrets.values.maintenanceDatabaseUrl) -}}
{{- fail "deadLetters: the purge and replayQuota CronJobs work across tenants and need secrets.values.maintenanceDatabaseUrl (a role that bypasses row-level security, e.g. the owner with BYPASSRLS); set it, or turn them off with deadLetters.purge.enabled=false and deadLetters.replayQuota.enabled=false" -}}
{{- end -}}
{{- if and .Values.admin.enabled (not .Values.admin.jwksUrl) (not .Values.secrets.existingSecret) (not .Values.secrets.values.adminJwtSecret) -}}
{{- fail "admin.enabled needs admin.jwksUrl or an ADMIN_JWT_SECRET (secrets.values.adminJwtSecret or the existing Secret's key); API keys alone also work with an existing Secret" -}}
{{- end -}}
{{- end -}}

{{/* The error codes answered 5xx (the broker retries them); test/deploy/monitoring.test.ts keeps it equal to src/errors.ts. */}}
{{- define "tew.retriedCodes" -}}
claim_lease_expiring|provider_unavailable|provider_disabled|provider_deferred|provider_timeout|provider_network|database_unavailable|settings_undecryptable|overloaded|shutting_down|internal_error
{{- end -}}
