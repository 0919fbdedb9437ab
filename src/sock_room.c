/* sock_room.c - send-buffer room of a socket; see sock_room.h. */
#include "sock_room.h"

#include <linux/sock_diag.h>
#include <stdint.h>
#include <sys/socket.h>

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

size_t sock_send_room(int fd)
{
    uint32_t mem[SK_MEMINFO_VARS];
    socklen_t len = sizeof(mem);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 ||
        len < sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1))
        return SIZE_MAX;
    uint32_t sndbuf = mem[SK_MEMINFO_SNDBUF], queued = mem[SK_MEMINFO_WMEM_QUEUED];
    if (queued >= sndbuf)
        return 0;
    /* The queue is counted with each buffer's overhead (truesize): keep a
     * quarter back so what we write is taken whole. */
    return (size_t)(sndbuf - queued) * 3 / 4;
}
