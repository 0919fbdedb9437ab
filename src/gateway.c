/* gateway.c - the process's one struct gateway and its starting values; see
 * gateway.h. */
#include "gateway.h"

/* Zero is every member's empty state but for the ones named here. */
struct gateway gateway_instance = {
    .worker = {.ready_fd = -1},                                 /* not a worker */
    .mqtt = {.next_op_id = 1, .next_seq = 1, .next_serial = 1}, /* 0 is "none" */
};

void gateway_release(void) { target_pool_reset(&gateway_instance.targets); }
