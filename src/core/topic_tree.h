/* topic_tree.h - the gateway's MQTT subscriptions: which clients want which
 * filters, reference-counted so that a filter wanted by 10,000 clients is
 * subscribed at the broker once, and matched against an arriving topic by
 * walking the topic's levels (not by scanning every client). Pure: no broker,
 * no sockets; subscribers are opaque pointers owned by the caller. */
#ifndef WSGATE_TOPIC_TREE_H
#define WSGATE_TOPIC_TREE_H

#include <stddef.h>

struct topic_tree;

struct topic_tree *topic_tree_create(void);
void topic_tree_destroy(struct topic_tree *t);

/* Adds `sub` as a subscriber of the valid filter `filter` at `qos` (0..2).
 * Returns 1 if the filter is new to the tree (subscribe at the broker), or
 * if its highest QoS rose (subscribe again with the new QoS); 0 if nothing
 * changes at the broker (also when `sub` already holds this filter: a
 * subscriber holds a filter once, and a second add only updates its QoS);
 * -1 on allocation failure or an invalid filter. */
int topic_tree_add(struct topic_tree *t, const char *filter, void *sub, int qos);

/* Removes `sub` from `filter`. Returns 1 if nobody holds the filter any more
 * (unsubscribe at the broker), 0 if others still do, -1 if `sub` did not
 * hold it. */
int topic_tree_remove(struct topic_tree *t, const char *filter, void *sub);

/* Calls fn once for every subscriber with at least one filter matching the
 * topic name (once per subscriber, even when several of its filters match),
 * in no particular order. Returns the number of calls. fn must not change
 * the tree. */
typedef void (*topic_tree_deliver_fn)(void *ctx, void *sub);
size_t topic_tree_match(struct topic_tree *t, const char *topic, topic_tree_deliver_fn fn,
                        void *ctx);

/* Calls fn for every filter held by anyone, with the highest QoS asked for
 * it (to restore subscriptions after a broker reconnect). */
typedef void (*topic_tree_filter_fn)(void *ctx, const char *filter, int max_qos);
void topic_tree_each_filter(const struct topic_tree *t, topic_tree_filter_fn fn, void *ctx);

size_t topic_tree_filter_count(const struct topic_tree *t);

/* The highest QoS any holder asked for `filter`, or -1 if nobody holds it. */
int topic_tree_max_qos(const struct topic_tree *t, const char *filter);

/* The caller's slot for per-filter state of a held filter (NULL before the
 * first add and after the last remove). The tree never reads or frees it:
 * free what you keep there before the remove that returns 1. */
void **topic_tree_filter_data(struct topic_tree *t, const char *filter);

#endif
