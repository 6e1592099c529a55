// Counts heap allocations (replaced global operator new) made by the calling
// thread between Start and Stop, to check that warm code paths allocate nothing.
#ifndef DATAFEED_TESTS_PRODUCER_ALLOC_COUNTER_H_
#define DATAFEED_TESTS_PRODUCER_ALLOC_COUNTER_H_

// ThreadSanitizer brings its own operator new: under it nothing is replaced
// and nothing counted (CountingAllocations() is false; tests skip).
#if defined(__SANITIZE_THREAD__)
#define DATAFEED_ALLOC_COUNTER 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DATAFEED_ALLOC_COUNTER 0
#endif
#endif
#ifndef DATAFEED_ALLOC_COUNTER
#define DATAFEED_ALLOC_COUNTER 1
#endif

namespace datafeed {
namespace test {

constexpr bool CountingAllocations() { return DATAFEED_ALLOC_COUNTER != 0; }
void StartCountingAllocations();
// operator new calls on this thread since StartCountingAllocations().
long StopCountingAllocations();

}  // namespace test
}  // namespace datafeed

#endif  // DATAFEED_TESTS_PRODUCER_ALLOC_COUNTER_H_
