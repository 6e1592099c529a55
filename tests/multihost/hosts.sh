# Many "hosts" on one machine, for tests (sourced by bash scripts).
#
# A host is a network namespace (its own loopback and an eth0 on a private
# bridge, with a 10.77.0.x address) plus a mount and UTS namespace with its
# own /dev/shm (a fresh tmpfs), its own /etc/machine-id (a file bound over
# it) and its own host name. datafeed decides "same host, use shared memory"
# from machine-id, boot id and uid (LocalHostDigest in
# transport/src/grpc/util_internal.cc), so two hosts here are two machines
# to it, and two processes in one host share a /dev/shm as on one machine.
#
# Each host is held open by a sentinel process (sleep) that lives in its
# namespaces; programs run in a host with nsenter into the sentinel's.
# MH_FORCE_ETC_OVERLAY=1 takes the overlay path (for machines without
# /etc/machine-id) even where the file exists, to test it.
# Every namespace, link and process is made by this file and removed by
# mh_cleanup (call it from an EXIT trap). Needs root (CAP_SYS_ADMIN and
# CAP_NET_ADMIN); mh_probe says plainly when the kernel refuses.
#
#   mh_probe                      -> 0, or prints why namespaces are refused
#   mh_init                       bridge namespace and a work dir ($MH_DIR)
#   mh_host NAME ADDR             a host named NAME (also its host name) at ADDR
#   mh_spawn NAME OUT ERR CMD...  start CMD in NAME, stdout/stderr to files;
#                                 sets MH_LAST_PID
#   mh_cut NAME                   unplug NAME's cable (its packets vanish)
#   mh_kill NAME                  kill -9 every process started in NAME
#   mh_wait_file_match FILE REGEX SECONDS WHAT
#   mh_cleanup                    everything away

MH_ID="dfmh$$"
# SIGTERM/SIGINT end the script through its EXIT trap (mh_cleanup).
trap 'exit 143' TERM
trap 'exit 130' INT
MH_DIR=""
MH_BRIDGE_NS=""
MH_HOSTS=()
declare -A MH_SENTINEL=() MH_NS=() MH_PIDS=() MH_LINK=()
MH_LAST_PID=""

mh_log() { echo "multihost: $*" >&2; }

# 0 when this kernel and user may make network, mount and UTS namespaces
# and veth pairs; otherwise says why on stderr and returns 1.
mh_probe() {
  local ns="${MH_ID}probe" err
  for tool in ip unshare nsenter mount; do
    command -v "$tool" >/dev/null || { mh_log "missing tool '$tool' (iproute2, util-linux, mount)"; return 2; }
  done
  if ! err="$(ip netns add "$ns" 2>&1)"; then
    mh_log "the kernel refuses network namespaces here (ip netns add: $err); needs root / CAP_SYS_ADMIN"
    return 1
  fi
  if ! err="$(ip -n "$ns" link add "${MH_ID}a" type veth peer name "${MH_ID}b" 2>&1)"; then
    ip netns del "$ns" 2>/dev/null
    mh_log "the kernel refuses veth pairs here (ip link add type veth: $err)"
    return 1
  fi
  ip netns del "$ns"
  if ! err="$(unshare --mount --uts --propagation private sh -c 'mount -t tmpfs mh /mnt && hostname mh-probe' 2>&1)"; then
    mh_log "the kernel refuses mount/UTS namespaces here (unshare --mount --uts: $err)"
    return 1
  fi
  return 0
}

# Namespaces left by a run of this file that was killed (SIGKILL runs no
# trap): named dfmh<its pid>-..., taken down with what runs in them when
# that pid is gone. (Their sentinels also end on their own after
# MH_SENTINEL_S.)
mh_reap_stale() {
  local ns owner p
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^dfmh[0-9]+(-|probe)' || true); do
    owner="${ns#dfmh}"
    owner="${owner%%[!0-9]*}"
    # Its test still runs (a zombie does not count).
    [[ "$(ps -o stat= -p "$owner" 2>/dev/null || true)" =~ ^[^Z] ]] && continue
    mh_log "removing namespace $ns left by an earlier run (pid $owner is gone)"
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

mh_init() {
  mh_reap_stale
  MH_DIR="$(mktemp -d /tmp/datafeed-multihost.XXXXXX)"
  MH_BRIDGE_NS="${MH_ID}-br"
  ip netns add "$MH_BRIDGE_NS"
  ip -n "$MH_BRIDGE_NS" link set lo up
  ip -n "$MH_BRIDGE_NS" link add br0 type bridge
  ip -n "$MH_BRIDGE_NS" link set br0 up
}

# mh_host NAME ADDR: NAME is the host name too (the StatefulSet pod name in
# the tests, e.g. datafeed-producer-1).
mh_host() {
  local name="$1" addr="$2" ns="${MH_ID}-${#MH_HOSTS[@]}" link="v${#MH_HOSTS[@]}"
  local dir="$MH_DIR/hosts/$name"
  mkdir -p "$dir"
  MH_HOSTS+=("$name")
  MH_NS[$name]="$ns"
  MH_LINK[$name]="$link"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 type veth peer name "$link" netns "$MH_BRIDGE_NS"
  ip -n "$MH_BRIDGE_NS" link set "$link" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  # A machine id of its own: 32 hex digits, as systemd writes it.
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/machine-id"
  echo >>"$dir/machine-id"
  # The sentinel: mounts this host's /dev/shm and machine id in a new mount
  # namespace inside the network namespace, then sleeps (exec'd, so its pid
  # is the one to enter). ip netns exec and unshare exec without forking.
  # A machine without /etc/machine-id (a bare container) has nothing to
  # bind over: /etc gets an overlay whose upper layer (a tmpfs) holds one.
  mkdir -p "$dir/etc-layer"
  ip netns exec "$ns" unshare --mount --uts --propagation private -- sh -c '
      set -e
      mount -t tmpfs -o size=512m,mode=1777 "datafeed-shm-$3" /dev/shm
      if [ -e /etc/machine-id ] && [ -z "$MH_FORCE_ETC_OVERLAY" ]; then
        mount --bind "$1" /etc/machine-id
      else
        mount -t tmpfs etc-layer "$4"
        mkdir "$4/upper" "$4/work"
        cp "$1" "$4/upper/machine-id"
        mount -t overlay overlay -o "lowerdir=/etc,upperdir=$4/upper,workdir=$4/work" /etc
      fi
      hostname "$3"
      echo ready >"$2"
      exec sleep "$5"' \
    sh "$dir/machine-id" "$dir/ready" "$name" "$dir/etc-layer" "${MH_SENTINEL_S:-900}" >"$dir/sentinel.log" 2>&1 &
  MH_SENTINEL[$name]=$!
  MH_PIDS[$name]=""
  mh_wait_file_match "$dir/ready" ready 20 "host $name to mount its /dev/shm and machine id" || {
    cat "$dir/sentinel.log" >&2
    return 1
  }
}

# Runs CMD in NAME's namespaces (network, mount, UTS) in the background,
# in this shell's working directory (entering a mount namespace would move
# it to /).
mh_spawn() {
  local name="$1" out="$2" err="$3"
  shift 3
  nsenter -t "${MH_SENTINEL[$name]}" -m -n -u --wd="$PWD" -- "$@" >"$out" 2>"$err" &
  MH_LAST_PID=$!
  MH_PIDS[$name]+=" $MH_LAST_PID"
}

# Runs CMD in NAME's namespaces in the foreground.
mh_exec() {
  local name="$1"
  shift
  nsenter -t "${MH_SENTINEL[$name]}" -m -n -u --wd="$PWD" -- "$@"
}

# The cable pulled: NAME's veth pair is deleted, so its peers hear nothing
# more from it (no FIN, no RST) until their keepalives give up.
mh_cut() {
  ip -n "$MH_BRIDGE_NS" link del "${MH_LINK[$1]}"
}

mh_kill() {
  local p
  for p in ${MH_PIDS[$1]}; do kill -9 "$p" 2>/dev/null || true; done
}

# Waits up to SECONDS for FILE to contain a line matching REGEX.
mh_wait_file_match() {
  local file="$1" regex="$2" seconds="$3" what="$4" i
  for ((i = 0; i < seconds * 20; ++i)); do
    grep -qE "$regex" "$file" 2>/dev/null && return 0
    sleep 0.05
  done
  mh_log "gave up after ${seconds} s waiting for $what ($file has no line matching '$regex')"
  return 1
}

# Waits up to SECONDS for PID (a child of this shell) to end and sets
# MH_RC to its exit status. One still running then is killed: MH_RC=124.
mh_wait_pid() {
  local pid="$1" seconds="$2" i
  MH_RC=0
  for ((i = 0; i < seconds * 10; ++i)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    mh_log "pid $pid still running after ${seconds} s: killed"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    MH_RC=124
    return
  fi
  wait "$pid" || MH_RC=$?
}

mh_cleanup() {
  local name p
  for name in "${MH_HOSTS[@]}"; do mh_kill "$name"; done
  for name in "${MH_HOSTS[@]}"; do
    p="${MH_SENTINEL[$name]:-}"
    [[ -n "$p" ]] && kill -9 "$p" 2>/dev/null || true
  done
  for name in "${MH_HOSTS[@]}"; do
    for p in ${MH_PIDS[$name]} ${MH_SENTINEL[$name]:-}; do wait "$p" 2>/dev/null || true; done
    ip netns del "${MH_NS[$name]}" 2>/dev/null || true
  done
  [[ -n "$MH_BRIDGE_NS" ]] && ip netns del "$MH_BRIDGE_NS" 2>/dev/null || true
  if [[ -n "$MH_DIR" && -z "${MH_KEEP:-}" ]]; then rm -rf "$MH_DIR"; fi
  MH_HOSTS=()
}
