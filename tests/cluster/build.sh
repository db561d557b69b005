#!/usr/bin/env bash
# Builds the control plane of the end-to-end tests from the Go module proxy (go.mod pins the
# versions), and the node's cluster DNS (CoreDNS, dns/), into
# ~/.cache/hangar/cluster/<digest of both modules>/bin, once: a second run builds nothing.
# Prints that bin folder.
set -euo pipefail
cd "$(dirname "$0")"
digest=$(cat go.mod go.sum dns/go.mod dns/go.sum dns/main.go | sha256sum | cut -c1-16)
out="${HANGAR_CLUSTER_CACHE:-$HOME/.cache/hangar/cluster}/$digest/bin"
tools=(kube-apiserver kube-controller-manager kubectl helm etcd kubelet kube-scheduler kube-proxy coredns)
missing=0
for t in "${tools[@]}"; do [ -x "$out/$t" ] || missing=1; done
if [ $missing = 1 ]; then
  mkdir -p "$out"
  k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
  minor=$(echo "$k8s" | cut -d. -f2)
  # What `kubectl version` and the API server's /version report (helm checks kubeVersion).
  version_flags="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  build() { # name package
    [ -x "$out/$1" ] && return
    echo "building $1 ($2)" >&2
    go build -trimpath -ldflags "-s -w $version_flags" -o "$out/$1.tmp" "$2"
    mv "$out/$1.tmp" "$out/$1"
  }
  build etcd go.etcd.io/etcd/server/v3
  build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
  build kubectl k8s.io/kubernetes/cmd/kubectl
  build helm helm.sh/helm/v3/cmd/helm
  build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
  # The node (node-up.sh): the kubelet is the largest build here (about 15 minutes cold).
  build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
  build kube-proxy k8s.io/kubernetes/cmd/kube-proxy
  build kubelet k8s.io/kubernetes/cmd/kubelet
  # Its own module (CoreDNS's requirements would move the control plane's).
  [ -x "$out/coredns" ] || (cd dns && echo "building coredns (dns/)" >&2 \
    && go build -trimpath -ldflags "-s -w" -o "$out/coredns.tmp" . && mv "$out/coredns.tmp" "$out/coredns")
fi
echo "$out"
