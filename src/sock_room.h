/* sock_room.h - how many bytes a socket's send buffer takes right now
 * without a partial write. wsgate writes no more than that, because
 * libwebsockets 4.1.6 can spin forever on a connection that holds a partly
 * sent buffer when the peer half-closes and then resets (see
 * docs/ARCHITECTURE.md). Linux: SO_MEMINFO. */
#ifndef WSGATE_SOCK_ROOM_H
#define WSGATE_SOCK_ROOM_H

#include <stddef.h>

/* Free bytes in fd's send buffer, with a margin for kernel overhead; SIZE_MAX
 * if it cannot be told (then callers write as before). */
size_t sock_send_room(int fd);

#endif
