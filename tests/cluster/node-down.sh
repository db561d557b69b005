#!/usr/bin/env bash
# Takes away what `node-up.sh DIR` added (run it before down.sh): its processes and pods, the
# bridge and the route, kube-proxy's rules, the cgroups and the mount namespace.
set -uo pipefail
dir=$(cd "$1" && pwd)
node="$dir/node"
sock="$node/containerd/containerd.sock"
stop() { # name
  local pidfile="$dir/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null && for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$pidfile"
}
stop kubelet
if [ -S "$sock" ]; then
  # The containers outlive containerd (their shims are their parents): stop them first.
  for _ in 1 2 3; do
    tasks=$(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null)
    [ -n "$tasks" ] || break
    for t in $tasks; do ctr -a "$sock" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1; done
    sleep 0.5
    for t in $tasks; do ctr -a "$sock" -n k8s.io tasks rm -f "$t" >/dev/null 2>&1; done
  done
  for c in $(ctr -a "$sock" -n k8s.io containers ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io containers rm "$c" >/dev/null 2>&1; done
fi
stop containerd
# Shims left without containerd, and any process still in the node's cgroups.
for h in /sys/fs/cgroup/*/hangar-node; do
  [ -d "$h" ] || continue
  find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
done
pkill -9 -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null
stop kube-scheduler
stop coredns
stop forward
if [ -f "$dir/kube-proxy.pid" ]; then
  stop kube-proxy
  "$(bash "$(dirname "$0")/build.sh")/kube-proxy" --cleanup > "$dir/kube-proxy-cleanup.log" 2>&1
  for ipt in iptables ip6tables; do   # --cleanup leaves an empty KUBE-FIREWALL and its jumps
    $ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null; $ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
    $ipt -F KUBE-FIREWALL 2>/dev/null; $ipt -X KUBE-FIREWALL 2>/dev/null
  done
fi
ip route del 10.96.0.0/24 dev hnode0 2>/dev/null
ip link del hnode0 2>/dev/null
for _ in 1 2 3 4 5; do
  left=0
  for h in /sys/fs/cgroup/*/hangar-node; do
    [ -d "$h" ] || continue
    find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || left=1
  done
  [ $left = 0 ] && break
  sleep 0.5
done
umount "$node/mntns" 2>/dev/null
true
