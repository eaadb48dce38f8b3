{{/*
Names and labels, in the usual Helm shape.
*/}}
{{- define "red-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "red-operator.fullname" -}}
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

{{- define "red-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "red-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "red-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "red-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: red
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "red-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "red-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "red-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespaces the operator watches with scope `namespace`. */}}
{{- define "red-operator.watchNamespaces" -}}
{{- if .Values.rbac.watchNamespaces }}
{{- toJson .Values.rbac.watchNamespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions. These MUST equal red_operator.rbac.RULES (operator/red_operator/rbac.py):
tests/chart/test_chart_render.py renders both scopes and compares. Change rbac.py first, then here.
Split in two because a namespaced Role cannot grant cluster-scoped resources.
*/}}
{{- define "red-operator.rules.namespaced" -}}
# The Federations themselves: kopf watches them and patches finalizers/annotations; status is ours.
- apiGroups: ["red.dev"]
  resources: ["federations"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["red.dev"]
  resources: ["federations/status"]
  verbs: ["get", "patch", "update"]
# The cluster each Federation runs on, and its pods (for readiness reasons).
- apiGroups: ["ray.io"]
  resources: ["rayclusters"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Owned per-Federation objects: the Ray token Secret, the report ConfigMap, the engine's identity.
# No list/watch on Secrets: the operator reads only the one it created, by name.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "delete"]
# update/patch too: granting the engine's Role (update of one ConfigMap) requires holding it.
# list/watch: the operator's informer of report ConfigMaps (label red.dev/federation, server-side).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "delete", "patch", "update"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create", "delete"]
# Out-of-cluster runs only (--engine-kubeconfig-dir): a token for the engine's ServiceAccount.
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "delete"]
# Events on every transition.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{- define "red-operator.rules.cluster" -}}
# kopf notices CRDs and namespaces appearing and going.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
