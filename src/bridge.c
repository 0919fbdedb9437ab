/* bridge.c - picks the bridge for a route's type; see bridge.h. The kinds of
 * bridge live in tcp_bridge.c (one backend socket per client) and
 * mqtt_bridge.c (a link to the route's shared broker session). */
#include "bridge_impl.h"

#include "config.h"
#include "route.h"
#include "session.h"

int bridge_check_request(const struct route_match *m, json_t *claims, char *reason,
                         size_t reason_len)
{
    if (m->route->type == WSG_ROUTE_MQTT)
        return mqtt_bridge_check_request(m, claims, reason, reason_len);
    return 0;
}

struct bridge *bridge_open(struct session *s)
{
    switch (session_match(s)->route->type) {
    case WSG_ROUTE_TCP:
        return tcp_bridge_open(s);
    case WSG_ROUTE_MQTT:
        return mqtt_bridge_open(s);
    }
    return NULL;
}

void bridge_client_data(struct bridge *b, const uint8_t *data, size_t len, bool first,
                        bool final, bool text)
{
    b->ops->client_data(b, data, len, first, final, text);
}

void bridge_client_drained(struct bridge *b) { b->ops->client_drained(b); }

void bridge_client_gone(struct bridge *b) { b->ops->client_gone(b); }

void bridge_shutdown(void) { tcp_bridge_shutdown(); }
