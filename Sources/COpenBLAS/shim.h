#ifndef REFINERY_COPENBLAS_SHIM_H
#define REFINERY_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
