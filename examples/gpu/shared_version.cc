// The one source of libdatafeed.so of its own (the rest is the static
// datafeed libraries, whole): says which C++ ABI the library was built with.
#include <cstddef>  // defines _GLIBCXX_USE_CXX11_ABI (libstdc++)

extern "C" int datafeed_shared_cxx11_abi() {
#if defined(_GLIBCXX_USE_CXX11_ABI) && _GLIBCXX_USE_CXX11_ABI
  return 1;
#else
  return 0;
#endif
}
