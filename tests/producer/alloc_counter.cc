// Replaces the global operator new/delete of producer_test (kept in its own
// file so no caller sees both inlined).
#include "alloc_counter.h"

#include <cstdlib>
#include <new>

namespace {
thread_local bool g_counting = false;
thread_local long g_count = 0;
}  // namespace

#if DATAFEED_ALLOC_COUNTER
void* operator new(std::size_t n) {
  if (g_counting) ++g_count;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace datafeed {
namespace test {

void StartCountingAllocations() {
  g_count = 0;
  g_counting = true;
}

long StopCountingAllocations() {
  g_counting = false;
  return g_count;
}

}  // namespace test
}  // namespace datafeed
