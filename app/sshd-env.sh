# shellcheck shell=bash
# A private OpenSSH sshd for the demo and benchmark scripts: the shell twin of the C++ test
# fixture tests/support/test_sshd. Source this file from bash, then
#
#   sshpool_sshd_start "$workdir" [MAXSTARTUPS]   # keys, config, free port, start, wait
#   trap sshpool_sshd_stop EXIT
#   ssh -F /dev/null -o BatchMode=yes -o UserKnownHostsFile="$SSHD_KNOWN_HOSTS" \
#       -o GlobalKnownHostsFile=/dev/null -i "$SSHD_IDENTITY" -p "$SSHD_PORT" \
#       "$SSHD_USER@127.0.0.1" true
#
# sshd listens on 127.0.0.1 and lets the current user log in with a generated ed25519 key.
# As root it needs /run/sshd (created here); as a normal user it runs unprivileged. Call both
# functions in the same shell (not in a subshell), so that the stop can reap sshd. Its log is
# $SSHD_DIR/sshd.log. Needs only bash, OpenSSH and /proc.

# Prints the pids of all descendants of PID (from the ppid field of /proc/*/stat), one a line.
_sshpool_descendants() {
  local stat line rest pid ppid todo=("$1") next
  local -A children=()
  for stat in /proc/[0-9]*/stat; do
    { read -r line <"$stat"; } 2>/dev/null || continue
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    rest=${line##*) }
    read -r _ ppid _ <<<"$rest"
    pid=${stat#/proc/}
    children[$ppid]+=" ${pid%/stat}"
  done
  while ((${#todo[@]} > 0)); do
    next=()
    for pid in "${todo[@]}"; do
      for ppid in ${children[$pid]:-}; do
        printf '%s\n' "$ppid"
        next+=("$ppid")
      done
    done
    todo=("${next[@]}")
  done
}

# Succeeds if nothing listens on 127.0.0.1:PORT.
_sshpool_port_free() {
  if command -v ss >/dev/null 2>&1; then
    [[ -z $(ss -Hltn "sport = :$1") ]]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# Sends SIGTERM (and SIGCONT, for stopped ones) to every pid given, waits up to 2 s for them
# to exit (or become zombies), and kills those still alive.
_sshpool_terminate() {
  local pid line deadline=$((SECONDS + 2)) alive=("$@")
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
  done
  while ((${#alive[@]} > 0 && SECONDS < deadline)); do
    sleep 0.02
    set -- "${alive[@]}"
    alive=()
    for pid in "$@"; do
      if { read -r line <"/proc/$pid/stat"; } 2>/dev/null && [[ $line != *") Z "* ]]; then
        alive+=("$pid")
      fi
    done
  done
  for pid in "${alive[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# sshpool_sshd_start DIR [MAXSTARTUPS]: generates keys into DIR (kept if already there),
# writes DIR/sshd_config (plus the lines in $SSHPOOL_SSHD_EXTRA_CONFIG, if set), starts sshd on
# a free port of 127.0.0.1, waits (up to 10 s) until it listens, and exports SSHD_PORT
# SSHD_PID SSHD_USER SSHD_IDENTITY SSHD_KNOWN_HOSTS SSHD_DIR. On failure prints the tail of
# sshd's log and returns 1.
sshpool_sshd_start() {
  local dir=${1:?usage: sshpool_sshd_start DIR [MAXSTARTUPS]} max_startups=${2:-200:30:400}
  local key port pid attempt deadline log status
  if ! mkdir -p "$dir" || ! dir=$(cd "$dir" && pwd); then
    return 1
  fi
  if ((EUID == 0)) && [[ ! -d /run/sshd ]]; then
    mkdir -m 0755 /run/sshd || return 1
  fi
  for key in ssh_host_ed25519_key id_ed25519; do
    if [[ ! -f $dir/$key ]]; then
      ssh-keygen -q -t ed25519 -N "" -C sshpool-test -f "$dir/$key" </dev/null || return 1
    fi
    chmod 0600 "$dir/$key" || return 1
  done
  cut -d' ' -f1,2 "$dir/id_ed25519.pub" >"$dir/authorized_keys" || return 1
  log=$dir/sshd.log
  for attempt in 1 2 3 4 5; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
    _sshpool_port_free "$port" || continue
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" \
      >"$dir/known_hosts" || return 1
    cat >"$dir/sshd_config" <<EOF || return 1
ListenAddress 127.0.0.1:$port
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
PermitTTY no
UseDNS no
PermitRootLogin prohibit-password
MaxStartups $max_startups
LogLevel INFO
X11Forwarding no
PrintMotd no
${SSHPOOL_SSHD_EXTRA_CONFIG:-}
EOF
    : >"$log" || return 1
    /usr/sbin/sshd -D -e -f "$dir/sshd_config" </dev/null >>"$log" 2>&1 &
    pid=$!
    deadline=$((SECONDS + 10))
    status=waiting
    while [[ $status == waiting ]]; do
      if grep -q "Server listening on 127.0.0.1 port $port\." "$log"; then
        status=ready
      elif ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        status=exited
      elif ((SECONDS >= deadline)); then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        status=timeout
      else
        sleep 0.02
      fi
    done
    if [[ $status == ready ]]; then
      SSHD_PORT=$port
      SSHD_PID=$pid
      SSHD_USER=$(id -un)
      SSHD_IDENTITY=$dir/id_ed25519
      SSHD_KNOWN_HOSTS=$dir/known_hosts
      SSHD_DIR=$dir
      export SSHD_PORT SSHD_PID SSHD_USER SSHD_IDENTITY SSHD_KNOWN_HOSTS SSHD_DIR
      return 0
    fi
    if [[ $status == timeout ]] || ! grep -q "Cannot bind any address" "$log"; then
      break
    fi
  done
  printf 'sshpool_sshd_start: sshd did not start (attempt %s, port %s); log tail:\n' \
    "$attempt" "${port:-none}" >&2
  tail -n 20 "$log" >&2 2>/dev/null || true
  return 1
}

# sshpool_sshd_stop: stops the sshd started by sshpool_sshd_start and every process serving a
# connection (SIGTERM, SIGKILL after 2 s), and waits for them. Does nothing without SSHD_PID.
sshpool_sshd_stop() {
  local pid tree=() found
  [[ -n ${SSHD_PID:-} ]] || return 0
  # Freeze the listener so it forks no more, then freeze its descendants until none is new.
  kill -STOP "$SSHD_PID" 2>/dev/null || true
  found=1
  while ((found)); do
    found=0
    for pid in $(_sshpool_descendants "$SSHD_PID"); do
      if [[ " ${tree[*]} " != *" $pid "* ]]; then
        kill -STOP "$pid" 2>/dev/null || true
        tree+=("$pid")
        found=1
      fi
    done
  done
  # Connection processes first, so that the listener reaps them as it wakes up to exit.
  _sshpool_terminate "${tree[@]}"
  _sshpool_terminate "$SSHD_PID"
  wait "$SSHD_PID" 2>/dev/null || true
  unset SSHD_PID
}
