/* topic.h - MQTT topic names and topic filters: syntax checks and matching
 * (MQTT 3.1.1 section 4.7, same in MQTT 5). Pure: no broker, no sockets. */
#ifndef WSGATE_TOPIC_H
#define WSGATE_TOPIC_H

#include <stdbool.h>

/* Longest topic or filter MQTT can carry (a two-byte length prefix). */
#define TOPIC_MAX_BYTES 65535

/* A filter as a SUBSCRIBE may carry it: non-empty, at most TOPIC_MAX_BYTES,
 * well-formed UTF-8; '+' only as a whole level, '#' only as the whole last
 * level. NULL is invalid. */
bool topic_filter_is_valid(const char *f);

/* A topic name as a PUBLISH may carry it: the same, and no '+' or '#'. */
bool topic_name_is_valid(const char *t);

/* True if `topic` (a valid topic name) matches `filter` (a valid filter).
 * "a/#" also matches "a"; '+' matches one level, also an empty one; a topic
 * starting with '$' is never matched by a filter starting with '+' or '#'. */
bool topic_filter_matches(const char *filter, const char *topic);

/* True if every topic that `filter` matches is also matched by `allow`, i.e.
 * a subscription to `filter` stays within `allow` (both valid filters).
 * "app/+/in" is within "app/#"; "app/#" is not within "app/+/in". */
bool topic_filter_covers(const char *allow, const char *filter);

#endif
