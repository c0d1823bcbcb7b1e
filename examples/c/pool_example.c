/* The warm-pool queue from plain C99: fill a pool, hand out by NodeSpread,
 * put one back, and handle errors the Berth way (status + berth_last_error). */
#include <stdio.h>
#include <string.h>

#include "berth.h"

#define S(str) (str), strlen(str)

static int check(berth_status s, const char* what) {
  if (s == BERTH_OK || s == BERTH_EMPTY) return 0;
  fprintf(stderr, "%s: %s: %s\n", what, berth_status_name(s), berth_last_error(NULL));
  return 1;
}

int main(void) {
  if (berth_abi_version() / 10000 != BERTH_ABI_VERSION_MAJOR) {
    fprintf(stderr, "libberth ABI %u does not match header %d\n", berth_abi_version(), BERTH_ABI_VERSION);
    return 1;
  }
  berth_engine* engine = NULL;
  if (check(berth_engine_new(&engine), "engine_new")) return 1;

  const char* pool = "default/warm-pool";
  const char* nodes[] = {"node-a", "node-b", "node-b", "node-c", "node-b", ""};
  char name[32];
  for (int i = 0; i < 6; ++i) {
    snprintf(name, sizeof name, "sandbox-%d", i);
    if (check(berth_pool_add(NULL, engine, S(pool), S("default"), S(name), S(nodes[i]), i != 3),
              "pool_add"))
      return 1;
  }

  berth_pool_key key;
  if (check(berth_pool_pop_spread(&key, engine, S(pool)), "pop_spread")) return 1;
  printf("handed out %.*s on %.*s (ready=%d, age=%llu)\n", (int)key.name_len, key.name,
         (int)key.node_len, key.node, key.ready, (unsigned long long)key.seq);

  int restored = 0;
  if (check(berth_pool_put_back(&restored, engine, S(pool), key.namespace_, key.namespace_len,
                                key.name, key.name_len, key.token),
            "put_back"))
    return 1;
  printf("put back: %s\n", restored ? "restored at its age" : "stale");

  berth_pool_stats stats;
  if (check(berth_pool_get_stats(&stats, engine, S(pool)), "get_stats")) return 1;
  printf("pool: %llu keys, %llu ready, %llu nodes\n", (unsigned long long)stats.keys,
         (unsigned long long)stats.ready_keys, (unsigned long long)stats.nodes);

  /* Bad input is an error with a message, never a crash. */
  berth_status s = berth_pool_pop_spread(&key, engine, S("no-such-pool"));
  printf("pop from unknown pool: %s (%s)\n", berth_status_name(s), berth_last_error(NULL));

  berth_engine_free(engine);
  return (restored == 1 && stats.keys == 6 && s == BERTH_ERR_NOT_FOUND) ? 0 : 1;
}
