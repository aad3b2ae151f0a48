#ifndef REFINERY_CONEDNN_SHIM_H
#define REFINERY_CONEDNN_SHIM_H
#include <oneapi/dnnl/dnnl.h>
#endif
