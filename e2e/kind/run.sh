#!/usr/bin/env bash
# Red end to end on kind, for hosts with Docker (our CI has no Docker engine and cannot run this; see
# README.md beside this file).
#
#   e2e/kind/run.sh            up, then test, then down (KEEP=1 keeps the cluster)
#   e2e/kind/run.sh up         kind cluster + KubeRay (Helm) + our images + our chart
#   e2e/kind/run.sh test       apply the examples (patched for kind); each must end (completionTime) Succeeded
#   e2e/kind/run.sh down       delete the kind cluster
#   e2e/kind/run.sh render     print the manifests `test` would apply (no cluster needed)
#
# Needs: docker, kind, kubectl, helm (3 or 4). Environment: KIND_CLUSTER (red-e2e),
# KUBERAY_CHART_VERSION (KubeRay of e2e/versions.env), KIND_NODE_IMAGE (kind's default),
# WAIT_TIMEOUT (30m per example), KEEP (0), EXAMPLES (space-separated files; default examples/*.yaml).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${HERE}/../.." && pwd)"
# shellcheck source=../versions.env
source "${REPO}/e2e/versions.env"

KIND_CLUSTER="${KIND_CLUSTER:-red-e2e}"
KUBERAY_CHART_VERSION="${KUBERAY_CHART_VERSION:-${KUBERAY_VERSION#v}}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-30m}"
KEEP="${KEEP:-0}"
OPERATOR_IMAGE="red-operator:dev"
RED_ENGINE_IMAGE="red-engine:dev"
RED_NAMESPACE="red-system"
FED_NAMESPACE="red-e2e"
CONTEXT="kind-${KIND_CLUSTER}"
if [[ -n "${EXAMPLES:-}" ]]; then
  read -r -a EXAMPLE_FILES <<<"${EXAMPLES}"
else
  EXAMPLE_FILES=("${REPO}"/examples/*.yaml)
fi

log() { echo "e2e/kind: $*" >&2; }
need() {
  local tool
  for tool in "$@"; do
    command -v "${tool}" >/dev/null 2>&1 || { log "missing tool: ${tool} (see e2e/kind/README.md)"; exit 2; }
  done
}
kc() { kubectl --context "${CONTEXT}" "$@"; }

# The examples (EXAMPLES, default examples/*.yaml), each patched for kind: CPU node pool, local image.
render() {
  need kubectl
  local example patch
  patch="$(sed "s|image: red-engine:dev|image: ${RED_ENGINE_IMAGE}|" "${HERE}/kind-federation-patch.yaml")"
  for example in "${EXAMPLE_FILES[@]}"; do
    echo "---"
    kubectl patch --local --type merge -o yaml -f "${example}" -p "${patch}"
  done
}

up() {
  need docker kind kubectl helm
  if kind get clusters | grep -qx "${KIND_CLUSTER}"; then
    log "kind cluster ${KIND_CLUSTER} exists; reusing it"
  else
    local image_args=()
    [[ -n "${KIND_NODE_IMAGE}" ]] && image_args=(--image "${KIND_NODE_IMAGE}")
    kind create cluster --name "${KIND_CLUSTER}" --config "${HERE}/kind-config.yaml" "${image_args[@]}" --wait 5m
  fi

  log "installing KubeRay ${KUBERAY_CHART_VERSION} with its Helm chart"
  helm repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update >/dev/null
  helm --kube-context "${CONTEXT}" upgrade --install kuberay-operator kuberay/kuberay-operator \
    --version "${KUBERAY_CHART_VERSION}" --namespace kuberay-system --create-namespace --wait --timeout 10m

  log "building and loading our images (the Dockerfile's targets)"
  docker build --target operator -t "${OPERATOR_IMAGE}" "${REPO}"
  docker build --target engine -t "${RED_ENGINE_IMAGE}" "${REPO}"
  kind load docker-image --name "${KIND_CLUSTER}" "${OPERATOR_IMAGE}" "${RED_ENGINE_IMAGE}"

  log "installing the red-operator chart"
  helm --kube-context "${CONTEXT}" upgrade --install red-operator "${REPO}/charts/red-operator" \
    --namespace "${RED_NAMESPACE}" --create-namespace \
    --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
    --set image.pullPolicy=Never --wait --timeout 5m
  kc -n "${RED_NAMESPACE}" rollout status deployment/red-operator --timeout 5m
}

diagnose() {
  log "diagnostics"
  kc get federations,rayclusters,pods -A -o wide || true
  kc -n "${FED_NAMESPACE}" describe federations || true
  kc -n "${RED_NAMESPACE}" logs deployment/red-operator --tail 200 || true
  kc get events -A --sort-by .lastTimestamp | tail -50 || true
}

# One example at a time: a kind node cannot hold several RayClusters at once.
test_examples() {
  need kubectl
  kc create namespace "${FED_NAMESPACE}" --dry-run=client -o yaml | kc apply -f -
  local all manifest name
  all=("${EXAMPLE_FILES[@]}")
  for example in "${all[@]}"; do
    EXAMPLE_FILES=("${example}")
    manifest="$(render)"
    name="$(kc -n "${FED_NAMESPACE}" apply -f - -o name <<<"${manifest}")"
    log "waiting for ${name} (${example#"${REPO}"/}) to finish (timeout ${WAIT_TIMEOUT})"
    # completionTime is set on Succeeded and on Failed alike: a failed run ends the wait at once
    # instead of holding it until the timeout (condition=Succeeded alone would).
    if ! kc -n "${FED_NAMESPACE}" wait "${name}" --for=jsonpath='{.status.completionTime}' --timeout "${WAIT_TIMEOUT}" \
      || [ "$(kc -n "${FED_NAMESPACE}" get "${name}" -o jsonpath='{.status.phase}')" != Succeeded ]; then
      diagnose
      log "FAILED: ${name} did not succeed"
      return 1
    fi
    kc -n "${FED_NAMESPACE}" get "${name}"
    kc -n "${FED_NAMESPACE}" delete "${name}" --wait --timeout 5m
  done
  log "all examples succeeded"
}

down() {
  need kind
  kind delete cluster --name "${KIND_CLUSTER}"
}

case "${1:-all}" in
  up) up ;;
  test) test_examples ;;
  down) down ;;
  render) render ;;
  all)
    up
    status=0
    test_examples || status=$?
    [[ "${KEEP}" == "1" ]] || down
    exit "${status}"
    ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) log "unknown command: $1"; exit 2 ;;
esac
