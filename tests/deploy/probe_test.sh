#!/usr/bin/env bash
# ctest deploy.probe: deploy/probe.py (the StatefulSet's liveness and
# readiness probes) against a real datafeed-producer serving mTLS, with
# certificates made here by openssl:
#   live and ready answer 0 once the producer serves (ready: GetStats shows a
#   published batch); ready with --min-batches above what the producer can
#   ever publish (its ring holds 2 and nobody reads) answers 1 saying how many;
#   without a client certificate both answer 1 (the handshake refused);
#   a port where nothing listens answers 1 naming the address.
# usage: probe_test.sh REPO_ROOT PRODUCER MAKE_MNIST
set -euo pipefail
root="$1" producer="$2" make_mnist="$3"
probe=(/usr/bin/python3 "$root/deploy/probe.py")
work="$(mktemp -d)"
ppid=""
cleanup() {
  [[ -n "$ppid" ]] && kill -9 "$ppid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
(
  cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
  printf 'subjectAltName=DNS:datafeed-producers,IP:127.0.0.1\n' >san.ext
  openssl req -newkey rsa:2048 -nodes -subj /CN=datafeed-producers -keyout server.key -out server.csr
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem
  openssl req -newkey rsa:2048 -nodes -subj /CN=probe -keyout client.key -out client.csr
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem
) >"$work/openssl.log" 2>&1 || fail "openssl could not make certificates: $(tail -5 "$work/openssl.log")"
"$make_mnist" --out "$work/mnist" --count 200 --seed 1 >/dev/null
# Two slots and nobody reading: the producer publishes 2 batches, then waits.
# Its log exists before it starts (the background job's redirection may come
# after the first look at it).
: >"$work/p.log"
"$producer" --mnist "$work/mnist" --endpoint grpc://127.0.0.1:0 --pipeline to_tensor --batch-size 10 \
  --threads 1 --slots 2 --max-in-flight 1 --quiet --tls-cert "$work/server.pem" --tls-key "$work/server.key" \
  --tls-client-ca "$work/ca.pem" 2>"$work/p.log" &
ppid=$!
port=""
for _ in $(seq 1 200); do
  port="$(sed -n 's/.*serving grpc:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/p.log" | head -1)"
  [[ -n "$port" ]] && break
  sleep 0.05
done
[[ -n "$port" ]] || fail "the producer did not say its port: $(cat "$work/p.log")"
tls=(--address "127.0.0.1:$port" --tls-ca "$work/ca.pem" --tls-cert "$work/client.pem" --tls-key "$work/client.key"
     --tls-server-name datafeed-producers)
"${probe[@]}" live "${tls[@]}" || fail "live: not live"
echo "ok: live"
# Ready once the first batch is published (bounded wait: 20 s).
ready=0
for _ in $(seq 1 100); do
  if "${probe[@]}" ready "${tls[@]}" 2>"$work/ready.err"; then ready=1; break; fi
  sleep 0.2
done
((ready)) || fail "ready: never ready: $(cat "$work/ready.err")"
echo "ok: ready"
if "${probe[@]}" ready "${tls[@]}" --min-batches 1000 2>"$work/err"; then fail "ready --min-batches 1000 said ready"; fi
grep -q "has published [0-9]* batches, not yet 1000" "$work/err" || fail "ready --min-batches 1000: $(cat "$work/err")"
echo "ok: not ready: $(cat "$work/err")"
no_cert=(--address "127.0.0.1:$port" --tls-ca "$work/ca.pem" --tls-server-name datafeed-producers --timeout 5)
for check in live ready; do
  if "${probe[@]}" "$check" "${no_cert[@]}" 2>"$work/err"; then fail "$check without a client certificate passed"; fi
  echo "ok: $check without a client certificate refused: $(cat "$work/err")"
done
kill -TERM "$ppid"
rc=0
timeout 60 tail --pid="$ppid" -f /dev/null || rc=$?
wait "$ppid" || true
ppid=""
if "${probe[@]}" live "${tls[@]}" --timeout 2 2>"$work/err"; then fail "live passed with the producer gone"; fi
grep -q "127.0.0.1:$port" "$work/err" || fail "live with the producer gone does not name the address: $(cat "$work/err")"
echo "ok: producer gone: $(cat "$work/err")"
