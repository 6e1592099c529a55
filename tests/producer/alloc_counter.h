// Counts heap allocations (replaced global operator new) made by the calling
// thread between Start and Stop, to check that warm code paths allocate nothing.
#ifndef DATAFEED_TESTS_PRODUCER_ALLOC_COUNTER_H_
#define DATAFEED_TESTS_PRODUCER_ALLOC_COUNTER_H_

namespace datafeed {
namespace test {

void StartCountingAllocations();
// operator new calls on this thread since StartCountingAllocations().
long StopCountingAllocations();

}  // namespace test
}  // namespace datafeed

#endif  // DATAFEED_TESTS_PRODUCER_ALLOC_COUNTER_H_
