#!/usr/bin/env bash
# make lint-chart: install/daemonset.yaml and Chart.yaml up to date (scripts/manifests.sh --check),
# `helm lint --strict`, and each rendering (the default values, then every
# charts/aws-eni-ip/ci/*-values.yaml) validated with kubernetes-validate --strict against the
# Kubernetes 1.37 and 1.29 schemas, as `make lint-k8s` validates install/.
# Usage: scripts/lint-chart.sh KUBERNETES_VALIDATE
set -euo pipefail
cd "$(dirname "$0")/.."
VALIDATE=${1:?usage: lint-chart.sh PATH-TO-kubernetes-validate}
CHART=charts/aws-eni-ip
helm=$(bash scripts/tools/helm.sh)

bash scripts/manifests.sh --check

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for values in "" "$CHART"/ci/*-values.yaml; do
  name=default args=()
  [[ -n $values ]] && name=$(basename "$values" -values.yaml) args=(--values "$values")
  echo "lint-chart: $name"
  "$helm" lint --strict --quiet "$CHART" --namespace kube-system "${args[@]}"
  "$helm" template aws-eni-ip "$CHART" --namespace kube-system "${args[@]}" >"$out/$name.yaml"
  "$VALIDATE" --strict --quiet "$out/$name.yaml"
  "$VALIDATE" --strict --quiet -k 1.29 "$out/$name.yaml"
done
echo "lint-chart: helm lint and kubernetes-validate passed for default $(cd "$CHART/ci" && ls -- *-values.yaml | sed 's/-values.yaml$//' | tr '\n' ' ')"
