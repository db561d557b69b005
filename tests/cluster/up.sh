#!/usr/bin/env bash
# Starts etcd and kube-apiserver on loopback for the end-to-end tests (and for a developer by
# hand): `bash tests/cluster/up.sh DIR`. State, certificates and keys go in DIR; RBAC is on; an
# admin identity (group system:masters) is written to DIR/kubeconfig, and DIR/env sets
# KUBECONFIG and puts the built kubectl and helm on PATH. `bash tests/cluster/down.sh DIR` stops
# exactly what this started. With CONTROLLER_MANAGER=1, kube-controller-manager runs too
# (ReplicaSets for Deployments, garbage collection of owned objects, EndpointSlices of Services,
# the kube-root-ca.crt ConfigMap pods mount); node-up.sh then adds a node where pods run.
# SERVICE_CIDR widens the Service range (10.96.0.0/24, which a node routes; bench.py needs more).
set -euo pipefail
dir=$(mkdir -p "$1" && cd "$1" && pwd)
bin=$(bash "$(dirname "$0")/build.sh")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Certificates: a CA, the API server's serving certificate for 127.0.0.1, an admin client
# certificate, and the key pair service account tokens are signed with.
pki="$dir/pki"
mkdir -p "$pki"
if [ ! -f "$pki/ca.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=hangar-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  sign() { # name subject extensions
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
      -extfile <(printf '%s\n' "$3") -out "$pki/$1.crt" 2>/dev/null
  }
  # 10.96.0.1 and 10.244.0.1: the `kubernetes` Service and the bridge, as pods on a test node see it.
  sign apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:10.244.0.1,DNS:localhost,DNS:kubernetes.default.svc"
  sign kubelet "/CN=localhost" "subjectAltName=IP:127.0.0.1,DNS:localhost"
  sign admin "/O=system:masters/CN=hangar-test-admin" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
fi

etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
"$bin/etcd" --name hangar-test --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "hangar-test=http://127.0.0.1:$peer_port" --log-level warn \
  > "$dir/etcd.log" 2>&1 &
echo $! > "$dir/etcd.pid"

"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --authorization-mode RBAC \
  --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range "${SERVICE_CIDR:-10.96.0.0/24}" --allow-privileged=true --endpoint-reconciler-type none \
  > "$dir/kube-apiserver.log" 2>&1 &
echo $! > "$dir/kube-apiserver.pid"

server="https://127.0.0.1:$api_port"
cat > "$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: hangar-test
  cluster: {server: "$server", certificate-authority: "$pki/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$pki/admin.crt", client-key: "$pki/admin.key"}
contexts:
- name: hangar-test
  context: {cluster: hangar-test, user: admin}
current-context: hangar-test
KUBECONFIG
printf 'export KUBECONFIG=%q\nexport PATH=%q:"$PATH"\n' "$dir/kubeconfig" "$bin" > "$dir/env"

# Ready when /readyz says so (at most 120 s: a busy 2-core machine is slow to start it).
for _ in $(seq 1 240); do
  if curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$server/readyz" >/dev/null 2>&1; then
    ready=1; break
  fi
  kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null || break
  sleep 0.5
done
if [ "${ready:-0}" != 1 ]; then
  echo "kube-apiserver did not become ready; see $dir/kube-apiserver.log" >&2
  tail -20 "$dir/kube-apiserver.log" >&2
  exit 1
fi

if [ "${CONTROLLER_MANAGER:-0}" = 1 ]; then
  "$bin/kube-controller-manager" --kubeconfig "$dir/kubeconfig" --bind-address 127.0.0.1 --secure-port 0 \
    --controllers 'deployment,replicaset,garbagecollector,namespace,serviceaccount-token,serviceaccount,endpointslice,root-ca-cert-publisher' \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" --use-service-account-credentials=false \
    > "$dir/kube-controller-manager.log" 2>&1 &
  echo $! > "$dir/kube-controller-manager.pid"
fi
echo "control plane up: $server (source $dir/env)"
