#!/usr/bin/env bash
# Adds a node to the control plane `up.sh DIR` started (with CONTROLLER_MANAGER=1), so that pods
# really run: kube-scheduler, containerd with runc (Debian's packages) and a kubelet built from
# k8s.io/kubernetes. `bash node-up.sh DIR [IMAGE.tar...]` imports the image archives into
# containerd (pods use imagePullPolicy IfNotPresent with localhost/... names: no registry);
# `bash node-down.sh DIR` takes all of it away again.
#
# It leaves the host as it was: containerd and the kubelet run in a mount namespace of their own
# (tmpfs over /run, /var/lib and /var/log, where both write to fixed paths; the three kernel
# settings the kubelet would set host-wide are files there), the kubelet finds no iptables on its
# PATH, and its cgroups live under /hangar-node. Pods get a bridge (hnode0, 10.244.0.0/24) with
# no masquerade and no default route (their one route off the bridge is the Service range, to the
# node), and the node routes the Service range back into the bridge: nothing a pod sends can
# leave the machine. CoreDNS on the bridge address is the cluster DNS. With KUBE_PROXY=1,
# kube-proxy (iptables mode) serves ClusterIPs, and the `kubernetes` Service reaches the API
# server (through a forwarder on the bridge address).
set -euo pipefail
dir=$(cd "$1" && pwd); shift
here=$(cd "$(dirname "$0")" && pwd)
bin=$(bash "$here/build.sh")
node="$dir/node"
bridge=hnode0 gateway=10.244.0.1 pods=10.244.0.0/24 services=10.96.0.0/24
for tool in containerd runc ctr /usr/lib/cni/bridge; do
  command -v "$tool" >/dev/null || { echo "node-up.sh: $tool is missing (apt-get install containerd runc containernetworking-plugins)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "node-up.sh: a node needs root (containerd, cgroups, a bridge)" >&2; exit 1; }
# A pod's call to a Service whose pod is on the same bridge comes back through the host's
# conntrack only when bridged traffic passes iptables (a host-wide setting, not changed here).
if [ "${KUBE_PROXY:-0}" = 1 ] && [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" != 1 ]; then
  echo "node-up.sh: KUBE_PROXY=1 needs bridged traffic to pass iptables: modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1" >&2; exit 1
fi
if ip link show "$bridge" >/dev/null 2>&1; then
  echo "node-up.sh: $bridge exists: another test node runs on this machine (or node-down.sh was not run)" >&2; exit 1
fi
mkdir -p "$node"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs,sysctl}
export KUBECONFIG="$dir/kubeconfig"

"$bin/kube-scheduler" --kubeconfig "$dir/kubeconfig" --leader-elect=false --bind-address 127.0.0.1 \
  --secure-port 0 > "$dir/kube-scheduler.log" 2>&1 &
echo $! > "$dir/kube-scheduler.pid"

# The node's mount namespace, kept alive by a bind mount on DIR/node/mntns.
touch "$node/mntns"
unshare --mount="$node/mntns" --propagation private true
printf '1\n' > "$node/sysctl/overcommit_memory"; printf '10\n' > "$node/sysctl/panic"; printf '1\n' > "$node/sysctl/panic_on_oops"
nsenter --mount="$node/mntns" sh -ec "
  mount --bind '$node/sysctl/overcommit_memory' /proc/sys/vm/overcommit_memory
  mount --bind '$node/sysctl/panic' /proc/sys/kernel/panic
  mount --bind '$node/sysctl/panic_on_oops' /proc/sys/kernel/panic_on_oops
  for d in /run /var/lib /var/log; do mount -t tmpfs -o mode=755 hangar-node \$d; done"

ip link add "$bridge" type bridge
ip addr add "$gateway/24" dev "$bridge"
ip link set "$bridge" up
# A ClusterIP no rule rewrote must not follow the default route off the machine.
ip route replace "$services" dev "$bridge" src "$gateway"

# Cluster DNS (CoreDNS's kubernetes plugin) on the bridge address: pods resolve Services by
# name, as in any cluster. It answers for cluster.local only, so no query leaves the machine.
cat > "$node/Corefile" <<COREFILE
cluster.local:53 in-addr.arpa:53 {
  bind $gateway
  errors
  kubernetes cluster.local in-addr.arpa {
    kubeconfig $dir/kubeconfig
  }
}
COREFILE
"$bin/coredns" -conf "$node/Corefile" > "$dir/coredns.log" 2>&1 &
echo $! > "$dir/coredns.pid"

cat > "$node/cni/net.d/10-hangar.conflist" <<CNI
{"cniVersion": "0.4.0", "name": "hangar-node", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pods"}]], "routes": [{"dst": "$services"}],
            "dataDir": "$node/cni/ipam"}}]}
CNI

sock="$node/containerd/containerd.sock"
cat > "$node/containerd.toml" <<TOML
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$node/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:hangar"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$node/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni/net.d"
    max_conf_num = 1
TOML
nsenter --mount="$node/mntns" setsid containerd --config "$node/containerd.toml" > "$dir/containerd.log" 2>&1 < /dev/null &
echo $! > "$dir/containerd.pid"
for _ in $(seq 1 120); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.5; done
for image in "$@"; do ctr -a "$sock" -n k8s.io images import --no-unpack "$image" >/dev/null; done

# cgroup v1 here: the kubelet's root in every hierarchy, cpusets copied from the root.
for h in /sys/fs/cgroup/*/; do
  [ -d "$h" ] || continue
  mkdir -p "$h/hangar-node"
  if [ -f "$h/cpuset.cpus" ]; then
    cat "$h/cpuset.cpus" > "$h/hangar-node/cpuset.cpus"; cat "$h/cpuset.mems" > "$h/hangar-node/cpuset.mems"
  fi
done

kport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$node/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false   # this host mounts cgroup v1; 1.37 still runs there when told to
cgroupDriver: cgroupfs
cgroupRoot: /hangar-node
containerRuntimeEndpoint: unix://$sock
address: 127.0.0.1
port: $kport
readOnlyPort: 0
healthzPort: 0
# The API server proves itself with a client certificate of the test CA (kubectl logs, exec).
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: "$dir/pki/ca.crt"}}
authorization: {mode: AlwaysAllow}
tlsCertFile: "$dir/pki/kubelet.crt"
tlsPrivateKeyFile: "$dir/pki/kubelet.key"
podLogsDir: "$node/pod-logs"
resolvConf: /etc/resolv.conf
clusterDNS: ["$gateway"]
clusterDomain: cluster.local
# Absolute floors: a percentage of a large, busy development disk would evict the tests' pods.
evictionHard: {memory.available: 50Mi, nodefs.available: 512Mi, imagefs.available: 512Mi, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
volumePluginDir: "$node/kubelet/volume-plugins"
syncFrequency: 5s
YAML
nsenter --mount="$node/mntns" env PATH=/usr/local/bin:/usr/bin:/bin setsid "$bin/kubelet" \
  --config "$node/kubelet.yaml" --kubeconfig "$dir/kubeconfig" --root-dir "$node/kubelet" \
  --hostname-override localhost > "$dir/kubelet.log" 2>&1 < /dev/null &
echo $! > "$dir/kubelet.pid"

for _ in $(seq 1 240); do
  [ "$("$bin/kubectl" get node localhost -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && { ready=1; break; }
  kill -0 "$(cat "$dir/kubelet.pid")" 2>/dev/null || break
  sleep 0.5
done
if [ "${ready:-0}" != 1 ]; then
  echo "node-up.sh: node localhost did not become Ready; see $dir/kubelet.log" >&2
  tail -20 "$dir/kubelet.log" >&2
  exit 1
fi
# The API server's TaintNodesByCondition registers the node not-ready; no node lifecycle
# controller runs here to lift it.
"$bin/kubectl" taint node localhost node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true

if [ "${KUBE_PROXY:-0}" = 1 ]; then
  api_port=$(sed -n 's|.*server: "https://127.0.0.1:\([0-9]*\)".*|\1|p' "$dir/kubeconfig")
  # Pods reach the API server at the bridge address (the API server listens on loopback only).
  python3 "$here/forward.py" "$gateway:$api_port" "127.0.0.1:$api_port" > "$dir/forward.log" 2>&1 &
  echo $! > "$dir/forward.pid"
  "$bin/kubectl" apply -f - > /dev/null <<YAML
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kubernetes, namespace: default, labels: {kubernetes.io/service-name: kubernetes}}
addressType: IPv4
endpoints: [{addresses: ["$gateway"], conditions: {ready: true}}]
ports: [{name: https, port: $api_port, protocol: TCP}]
YAML
  cat > "$node/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$dir/kubeconfig"}
mode: iptables
hostnameOverride: localhost
clusterCIDR: $pods
healthzBindAddress: ""
metricsBindAddress: ""
nodePortAddresses: ["$gateway/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
YAML
  "$bin/kube-proxy" --config "$node/kube-proxy.yaml" > "$dir/kube-proxy.log" 2>&1 &
  echo $! > "$dir/kube-proxy.pid"
fi
# CoreDNS answers for the API server's own Service before a pod may ask it anything.
for _ in $(seq 1 120); do
  python3 - "$gateway" <<'PY' && { dns=1; break; }
import socket, sys
name = b"".join(bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b"."))
query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
try:
    s.sendto(query, (sys.argv[1], 53))
    answer = s.recv(512)
except OSError:
    sys.exit(1)
sys.exit(0 if answer[3] & 15 == 0 and int.from_bytes(answer[6:8], "big") > 0 else 1)
PY
  sleep 0.5
done
[ "${dns:-0}" = 1 ] || { echo "node-up.sh: cluster DNS does not answer; see $dir/coredns.log" >&2; tail -20 "$dir/coredns.log" >&2; exit 1; }
echo "node localhost Ready"
