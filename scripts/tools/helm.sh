#!/usr/bin/env bash
# Builds helm from the Go module proxy, pinned, into /root/.cache/aws-eni-ip/tools/helm-VERSION/helm
# (outside the clone, so CI on this machine finds it built), and prints that path.
# Usage: scripts/tools/helm.sh   (HELM_VERSION overrides the pin; a built binary is reused)
set -euo pipefail
# The machine's Go: Debian's golang-go (1.19) cannot build helm v4 (go 1.26 in its go.mod).
export PATH=/usr/local/go/bin:$PATH

HELM_VERSION=${HELM_VERSION:-v4.3.2}
TOOLS_DIR=${AEI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aws-eni-ip/tools}
dir=$TOOLS_DIR/helm-$HELM_VERSION
bin=$dir/helm

if [[ ! -x $bin ]]; then
  command -v go >/dev/null || { echo "helm.sh: no go on PATH; install Go 1.26+ in /usr/local/go" >&2; exit 1; }
  echo "helm.sh: building helm $HELM_VERSION into $dir (first run: a few minutes)" >&2
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # The version variables helm's own Makefile sets; without them `helm version` says v4.3 only.
  CGO_ENABLED=0 GOBIN=$tmp GOFLAGS=-buildvcs=false nice -n 10 go install -trimpath \
    -ldflags "-w -s -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  mv "$tmp/helm" "$bin"
fi
"$bin" version --short >/dev/null || { echo "helm.sh: $bin does not run; delete $dir and retry" >&2; exit 1; }
echo "$bin"
