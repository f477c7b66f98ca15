#!/usr/bin/env bash
# The cluster demo (issue #17) end to end on a Debian machine: installs what is missing
# (nginx, the openssl CLI, jq), builds, then starts a private OpenSSH sshd on 127.0.0.1, a
# mock LLM service (sshpool-backend), a cluster CA and one certificate per node made with
# the openssl CLI, three sshpool-demo nodes n1, n2, n3 on loopback (the same six users on
# each, the nodes authenticating each other by mutual TLS on their cluster ports) and nginx
# in front of them, round robin. It then shows, and checks:
#   1. requests for every user spread over the three nodes by nginx, all answered;
#   2. from each node's /stats: every user has its SSH connection on one node only (its
#      owner), whichever node its requests entered;
#   3. the node owning the most users killed with SIGKILL: the survivors see it gone within
#      the heartbeat deadline, and every user is served again, now by a survivor.
# It prints what it shows and exits non-zero if something is not as described. Everything it
# started is stopped at the end.
#
# usage: app/cluster-demo.sh          (SSHPOOL_BUILD_DIR=dir to build elsewhere)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=app/demo-env.sh
source "$root/app/demo-env.sh"
sshpool_demo_setup nginx-light openssl jq

failures=0
fail() {
  echo "!!! $*" >&2
  failures=$((failures + 1))
}

# A port of 127.0.0.1 that nothing listens on (the cluster ports must be known to every node
# before it starts: each lists the others' as peers). Below Linux's ephemeral range (32768
# up): a node that starts first dials its peers before they listen, and the local port of
# such a connection must not be the one a later node is about to listen on.
free_port() {
  local port
  for _ in {1..50}; do
    port=$((20000 + RANDOM % 12000))
    if _sshpool_port_free "$port"; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

set -m
sshpool_sshd_start "$work/sshd" >/dev/null
set +m
exec {backend_fd}< <(exec setsid "$build/app/sshpool-backend" --name llm --tokens 3)
pids+=($!)
read -r -t 10 line <&"$backend_fd"
backend_port=${line##*:}

echo "== a cluster CA, and a certificate it signs for each node (openssl CLI)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=sshpool-cluster-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
nodes=(n1 n2 n3)
declare -A cluster_port http_port node_pid node_fd
for n in "${nodes[@]}"; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$n" \
    -keyout "$work/$n.key" -out "$work/$n.csr" 2>/dev/null
  openssl x509 -req -in "$work/$n.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 1 -out "$work/$n.pem" 2>/dev/null
  cluster_port[$n]=$(free_port)
  echo "   $n: $(openssl x509 -in "$work/$n.pem" -noout -subject -issuer | tr '\n' ' ')"
done

users=(alice bob carol dave erin frank)
user_entries() {
  local u sep=""
  for u in "${users[@]}"; do
    printf '%s"%s": {"host": "127.0.0.1", "port": %s, "username": "%s", "identity_file": "%s",
      "known_hosts_file": "%s", "target_host": "127.0.0.1", "target_port": %s}' "$sep" "$u" \
      "$SSHD_PORT" "$SSHD_USER" "$SSHD_IDENTITY" "$SSHD_KNOWN_HOSTS" "$backend_port"
    sep=$',\n    '
  done
}
for n in "${nodes[@]}"; do
  peers=""
  for p in "${nodes[@]}"; do
    [[ $p == "$n" ]] || peers+="${peers:+, }\"127.0.0.1:${cluster_port[$p]}\""
  done
  cat >"$work/$n.json" <<EOF
{
  "listen": "127.0.0.1:0",
  "log_level": "info",
  "max_connections_per_user": 2,
  "cluster": {"node_id": "$n", "listen": "127.0.0.1:${cluster_port[$n]}",
              "peers": [$peers],
              "ca_file": "ca.pem", "cert_file": "$n.pem", "key_file": "$n.key",
              "heartbeat_interval": 250, "heartbeat_timeout": 1500},
  "users": {
    $(user_entries)
  }
}
EOF
  exec {fd}< <(exec setsid "$build/app/sshpool-demo" --config "$work/$n.json" 2>"$work/$n.log")
  node_pid[$n]=$!
  node_fd[$n]=$fd
  pids+=("${node_pid[$n]}")
done
for n in "${nodes[@]}"; do
  if ! read -r -t 30 line <&"${node_fd[$n]}"; then
    echo "sshpool-demo $n did not start:" >&2
    cat "$work/$n.log" >&2
    exit 1
  fi
  http_port[$n]=${line##*:}
  echo "== $n: $line, cluster port 127.0.0.1:${cluster_port[$n]}"
done
echo "   $n's config: $(jq -c .cluster "$work/$n.json")"

# stats NODE: the node's /stats.
stats() {
  curl -sS "http://127.0.0.1:${http_port[$1]}/stats"
}
# wait_members COUNT NODE...: waits up to 15 s until every NODE sees COUNT live members.
wait_members() {
  local count=$1 n deadline=$((SECONDS + 15))
  shift
  for n in "$@"; do
    until [[ $(stats "$n" | jq '.cluster.member_count') == "$count" ]]; do
      if ((SECONDS >= deadline)); then
        fail "$n does not see $count members: $(stats "$n" | jq -c .cluster)"
        return 1
      fi
      sleep 0.1
    done
  done
}

wait_members 3 "${nodes[@]}" || exit 1
echo "   members as n1 sees them: $(stats n1 | jq -c '[.cluster.members, (.cluster.peers[] | {address, node_id, state})]')"

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/nginx/client_body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream cluster {
    server 127.0.0.1:${http_port[n1]};
    server 127.0.0.1:${http_port[n2]};
    server 127.0.0.1:${http_port[n3]};
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://cluster;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      add_header X-Entered-At \$upstream_addr always;
    }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" </dev/null >"$work/nginx/nginx.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null && break
  sleep 0.05
done
base=http://127.0.0.1:$nginx_port

# node_of ADDR: the node whose front end is ADDR ("127.0.0.1:PORT"; nginx may list several).
node_of() {
  local n
  for n in "${nodes[@]}"; do
    if [[ ${1##*:} == "${http_port[$n]}" ]]; then
      echo "$n"
      return
    fi
  done
  echo "$1"
}

# request USER: one GET /u/USER/api/tags through nginx; prints where it entered and the status.
request() {
  local status entered
  status=$(curl -sS -o "$work/body" -D "$work/head" -w '%{http_code}' "$base/u/$1/api/tags") ||
    status=000
  entered=$(grep -i '^x-entered-at:' "$work/head" | cut -d' ' -f2- | tr -d '\r')
  entered=${entered##*, }
  printf '   %-6s entered at %-3s -> %s %s\n' "$1" "$(node_of "$entered")" "$status" \
    "$(head -c 60 "$work/body")"
  [[ $status == 200 ]]
}

echo
echo "== nginx on :$nginx_port, round robin over n1 :${http_port[n1]}, n2 :${http_port[n2]}, n3 :${http_port[n3]}"
echo "== three GET /u/USER/api/tags per user: each user's requests enter at different nodes"
for round in 1 2 3; do
  for u in "${users[@]}"; do
    request "$u" || fail "$u's request (round $round) was not answered 200"
  done
done

# connection_table: for each user, its SSH connections on each running node (from /stats);
# sets owner[USER] to the one node holding them, and checks there is exactly one.
declare -A owner
connection_table() {
  local u n count holders
  declare -A per_node=()
  for n in "$@"; do
    while read -r u count; do
      per_node[$n/$u]=$count
    done < <(stats "$n" | jq -r '.pool.per_user[] | "\(.user) \(.connections)"')
  done
  printf '   %-6s' user
  printf ' %4s' "$@"
  echo "   (SSH connections)"
  for u in "${users[@]}"; do
    printf '   %-6s' "$u"
    holders=()
    for n in "$@"; do
      count=${per_node[$n/$u]:-0}
      printf ' %4s' "$count"
      ((count == 0)) || holders+=("$n")
    done
    echo
    if ((${#holders[@]} != 1)); then
      fail "$u has connections on ${#holders[@]} nodes (${holders[*]:-none}), not on one"
    else
      owner[$u]=${holders[0]}
    fi
  done
}

echo
echo "== from each node's /stats: each user's SSH connections are on one node, its owner"
connection_table "${nodes[@]}"
for n in "${nodes[@]}"; do
  echo "   $n: $(stats "$n" | jq -c '.cluster | {remote_acquires, served_acquires, members}')"
done

# The victim: the node owning the most users.
declare -A owned=()
victim=n1
for u in "${users[@]}"; do
  [[ -z ${owner[$u]:-} ]] || owned[${owner[$u]}]=$((${owned[${owner[$u]}]:-0} + 1))
done
for n in "${nodes[@]}"; do
  ((${owned[$n]:-0} <= ${owned[$victim]:-0})) || victim=$n
done
survivors=()
for n in "${nodes[@]}"; do
  [[ $n == "$victim" ]] || survivors+=("$n")
done

echo
echo "== kill -9 $victim (the owner of ${owned[$victim]:-0} users): no drain, no goodbye"
killed_at=$(date +%s%N)
kill -KILL "${node_pid[$victim]}"
wait_members 2 "${survivors[@]}" || true
echo "   the survivors see 2 members after $((($(date +%s%N) - killed_at) / 1000000)) ms:" \
  "$(stats "${survivors[0]}" | jq -c '[.cluster.members, (.cluster.peers[] | {address, node_id, state})]')"
echo "== every user again through nginx (it skips the dead node)"
for u in "${users[@]}"; do
  deadline=$((SECONDS + 10))
  until request "$u"; do
    if ((SECONDS >= deadline)); then
      fail "$u is not served 10 s after the kill"
      break
    fi
    sleep 0.2
  done
done
echo "   all users served $((($(date +%s%N) - killed_at) / 1000000)) ms after the kill"
echo
echo "== the survivors' /stats: the victim's users now have their connections on a survivor"
connection_table "${survivors[@]}"

echo
if ((failures > 0)); then
  echo "!!! $failures check(s) failed; the nodes' logs:" >&2
  for n in "${nodes[@]}"; do
    echo "--- $n" >&2
    tail -n 20 "$work/$n.log" >&2
  done
  exit 1
fi
echo "== cluster demo OK: one set of SSH connections per user, and a failover to the survivors"
