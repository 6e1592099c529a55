/* Compiles datafeed_c.h as C (C99, -pedantic): the header must stay usable
   from C and from any FFI that reads C declarations. Defines nothing. */
#include "datafeed_c.h"

typedef char df_header_check_abi[(DF_ABI_VERSION == 1) ? 1 : -1];
