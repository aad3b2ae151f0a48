#ifndef REFINERY_CZEROMQ_SHIM_H
#define REFINERY_CZEROMQ_SHIM_H
#include <zmq.h>
#endif
