/* sock_room.c - send-buffer room of a socket; see sock_room.h. */
#include "sock_room.h"

#include <linux/sock_diag.h>
#include <stdint.h>
#include <sys/socket.h>

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

int sock_send_state(int fd, size_t *queued, size_t *room)
{
    uint32_t mem[SK_MEMINFO_VARS];
    socklen_t len = sizeof(mem);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 ||
        len < sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1))
        return -1;
    uint32_t sndbuf = mem[SK_MEMINFO_SNDBUF], wqueued = mem[SK_MEMINFO_WMEM_QUEUED];
    *queued = wqueued;
    /* The queue is counted with each buffer's overhead (truesize): keep a
     * quarter back so what we write is taken whole. */
    *room = wqueued >= sndbuf ? 0 : (size_t)(sndbuf - wqueued) * 3 / 4;
    return 0;
}

size_t sock_send_room(int fd)
{
    size_t queued, room;
    return sock_send_state(fd, &queued, &room) == 0 ? room : SIZE_MAX;
}
