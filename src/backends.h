/* backends.h - the backend types this build knows, in one table. */
#ifndef WSGATE_BACKENDS_H
#define WSGATE_BACKENDS_H

#include "backend_type.h"

extern const struct backend_type tcp_backend_type;  /* tcp_bridge.c */
extern const struct backend_type mqtt_backend_type; /* mqtt_bridge.c */

/* Registers every built-in type, once per process (later calls do nothing).
 * 0, or -1 if the registry refused one (a programming error). */
int backends_register_builtin(void);

#endif
