#!/usr/bin/env bash
# Builds the real Kubernetes API server and etcd that the Kubernetes tests
# run (internal/testutils/kubeapi), once per checkout, into DIR (default
# .tools/k8s): DIR/kube-apiserver and DIR/etcd. Each is built from the Go
# module proxy in a throwaway module generated under DIR/src; nothing here is
# committed.
#
#   scripts/build-k8s.sh [DIR] [kube-apiserver|etcd ...]
#
# kube-apiserver: k8s.io/kubernetes is not meant to be a dependency: its
# go.mod points each k8s.io/* staging module at ./staging/src/..., which a
# module that requires it does not have. The generated module replaces each
# of those with its published v0.MINOR.PATCH (one line each, read from
# kubernetes' own go.mod), then go mod tidy resolves the rest. About 5
# minutes on 2 cores; etcd (a three-line main calling etcdmain.Main) about
# 30 seconds.
set -euo pipefail

KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
GO=${GO:-go}

dir=${1:-.tools/k8s}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kube-apiserver etcd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# Published staging modules are v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>.
staging_version=v0.${KUBERNETES_VERSION#v1.}

# The module proxy only: builds must not depend on VCS hosts.
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0

build_apiserver() {
  local src=$dir/src/kube-apiserver
  rm -rf "$src" && mkdir -p "$src"
  local gomod
  gomod=$(cd "$src" && $GO mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { echo "build-k8s: no go.mod for k8s.io/kubernetes@$KUBERNETES_VERSION" >&2; return 1; }
  {
    echo "module netflowtcpend.test/kube-apiserver-build"
    echo
    grep -m1 '^go ' "$gomod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "tool k8s.io/kubernetes/cmd/kube-apiserver"
    echo
    echo "replace ("
    # Every module kubernetes replaces with a ./staging directory.
    awk -v v="$staging_version" '
      /^replace \(/ { in_block = 1; next }
      in_block && /^\)/ { in_block = 0 }
      in_block && $2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }
    ' "$gomod"
    echo ")"
  } >"$src/go.mod"
  grep -q '=> k8s.io/api ' "$src/go.mod" ||
    { echo "build-k8s: found no staging replaces in $gomod" >&2; return 1; }
  (
    cd "$src"
    $GO mod tidy
    $GO build -trimpath -o "$dir/kube-apiserver.tmp" \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)" \
      k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
}

build_etcd() {
  local src=$dir/src/etcd
  rm -rf "$src" && mkdir -p "$src"
  cat >"$src/main.go" <<'EOF'
// etcd, built from its server module for the Kubernetes tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (
    cd "$src"
    $GO mod init netflowtcpend.test/etcd-build >/dev/null 2>&1
    $GO get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    $GO mod tidy
    $GO build -trimpath -ldflags "-s -w" -o "$dir/etcd.tmp" .
  )
  mv "$dir/etcd.tmp" "$dir/etcd"
}

for t in "${targets[@]}"; do
  start=$(date +%s)
  case $t in
  kube-apiserver) build_apiserver ;;
  etcd) build_etcd ;;
  *) echo "build-k8s: unknown target $t (kube-apiserver or etcd)" >&2; exit 2 ;;
  esac
  echo "build-k8s: built $dir/$t in $(($(date +%s) - start))s"
done
