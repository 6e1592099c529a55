#!/usr/bin/env bash
# The transport and producer tests built with ThreadSanitizer (clang 14,
# build-tsan/) and run: any data race fails the test that hit it.
#
# What runs: the shared-memory ring, the delivery ledger and sessions, the
# multi-process delivery tests over shared memory, frames and endpoints, and
# the whole producer suite (thread pool, datasets, pipelines) over the
# in-process and shared-memory transports. What does not: tests that go
# through gRPC. Debian's libgrpc is not built with TSan, so the
# synchronisation inside it (its completion queues, absl mutexes) is
# invisible to TSan, and every hand-off of our objects through gRPC's
# threads is reported as a race that is not one; those paths run under
# ASan+UBSan (scripts/sanitize.sh) and in the chaos test instead.
#   scripts/tsan.sh                    # the set above
#   scripts/tsan.sh --gtest_filter=... # extra arguments go to both binaries
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS
bash "$root/scripts/clang_build.sh" build-tsan thread OFF transport_test producer_test datafeed_test_peer datafeed-gc
built=$((SECONDS - start))
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$root/scripts/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
# Suites that never touch gRPC (see above). Parameterised suites run only
# their shared-memory and in-process instances.
transport_filter='BatchLayoutTest.*:ConsumerSessionChecks.*:DTypeTest.*:Endpoint.*:FinishFrameTest.*:FinishTest.*'
transport_filter+=':FrameTest.*:GroupRestore.*:LedgerJournal.*:LedgerRestore.*:ShmAttackAfterAttach.*:ShmAttackGc.*'
transport_filter+=':ShmAttackHeader.*:ShmAttackOwner.*:ShmAttackStaleName.*:ShmMultiProcess.*:ShmSegment.*:SpecTest.*'
transport_filter+=':Status.*:TransportConformance/0.*:TransportConformance/1.*:Transports/DeliveryMp.*/shm'
status=0
"$root/build-tsan/tests/transport/transport_test" --gtest_filter="$transport_filter" --gtest_brief=1 "$@" || status=1
"$root/build-tsan/tests/producer/producer_test" --gtest_brief=1 "$@" || status=1
echo "tsan.sh: built in ${built} s, ran in $((SECONDS - start - built)) s (status $status)"
exit "$status"
