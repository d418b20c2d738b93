/*
 * The N-API glue (the one file that knows Node): turns JS values into engine calls and back.
 * Close records cross as raw bytes copied into an ArrayBuffer the TS side decodes
 * (lib/native/index.ts RECORD_*), so a batch costs one call, not an object per connection.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <node_api.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "proxy.h"

_Static_assert(sizeof(l4_record) == 112, "lib/native/index.ts decodes 112-byte records");
_Static_assert(offsetof(l4_record, client_ip) == 28, "record layout");
_Static_assert(offsetof(l4_record, id) == 76, "record layout");
_Static_assert(offsetof(l4_record, opened) == 92, "record layout");
_Static_assert(offsetof(l4_record, bytes_in) == 96, "record layout");
_Static_assert(sizeof(l4_cidr) == 9 * sizeof(uint32_t), "lib/native/index.ts packs a CIDR block as 9 words");
_Static_assert(L4_STAT_REJECTED_MAX_CONNS == 1 && L4_STAT_REFUSED_DENIED == 7 && L4_STAT_REFUSED_NOT_ALLOWED == 8 &&
                   L4_STAT_REFUSED_MAX_CONNS_PER_IP == 9 && L4_STAT_REFUSED_RATE_PER_IP == 10,
               "lib/native/index.ts STAT_* indices");

#define CALL(env, call)                                             \
  do {                                                              \
    if ((call) != napi_ok) {                                        \
      const napi_extended_error_info *info = NULL;                  \
      napi_get_last_error_info((env), &info);                       \
      bool pending = false;                                         \
      napi_is_exception_pending((env), &pending);                   \
      if (!pending)                                                 \
        napi_throw_error((env), "ERR_NATIVE",                       \
                         info && info->error_message ? info->error_message : "N-API call failed"); \
      return NULL;                                                  \
    }                                                               \
  } while (0)

#define THROW(env, code, message)               \
  do {                                          \
    napi_throw_error((env), (code), (message)); \
    return NULL;                                \
  } while (0)

typedef struct engine_box {
  l4_engine *engine;
  napi_threadsafe_function tsfn;
  napi_env env;
} engine_box;

/* ---- helpers ----------------------------------------------------------------------------- */

static napi_value args_of(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  for (size_t i = argc; i < want; i++) napi_get_undefined(env, &argv[i]);
  napi_value ok;
  napi_get_boolean(env, true, &ok);
  return ok;
}

static int get_u32(napi_env env, napi_value object, const char *key, uint32_t *out) {
  napi_value v;
  if (napi_get_named_property(env, object, key, &v) != napi_ok) return 0;
  napi_valuetype type;
  napi_typeof(env, v, &type);
  if (type != napi_number) return 0;
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

static void *external_of(napi_env env, napi_value value) {
  void *p = NULL;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external) return NULL;
  if (napi_get_value_external(env, value, &p) != napi_ok) return NULL;
  return p;
}

/* A typed array's elements, checked for type; NULL (and length 0) when the value is undefined. */
static int typed_of(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *length) {
  napi_valuetype vt;
  napi_typeof(env, value, &vt);
  *data = NULL;
  *length = 0;
  if (vt == napi_undefined || vt == napi_null) return 1;
  bool is = false;
  napi_is_typedarray(env, value, &is);
  if (!is) return 0;
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, length, data, &buffer, &offset) != napi_ok) return 0;
  return type == want;
}

static int typed_prop(napi_env env, napi_value object, const char *key, napi_typedarray_type want, void **data, size_t *length) {
  napi_value v;
  if (napi_get_named_property(env, object, key, &v) != napi_ok) return 0;
  return typed_of(env, v, want, data, length);
}

static int sockaddr_of(napi_env env, napi_value host, uint32_t port, struct sockaddr_storage *out, socklen_t *length) {
  char text[64];
  size_t n = 0;
  if (napi_get_value_string_utf8(env, host, text, sizeof text, &n) != napi_ok) return 0;
  memset(out, 0, sizeof *out);
  struct sockaddr_in *in = (struct sockaddr_in *)out;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
  if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    *length = sizeof *in;
    return 1;
  }
  char *zone = strchr(text, '%');
  if (zone) *zone = 0;
  if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    *length = sizeof *in6;
    return 1;
  }
  return 0;
}

/* ---- engine ------------------------------------------------------------------------------ */

static void notify_js(void *ctx) {
  engine_box *box = ctx;
  napi_call_threadsafe_function(box->tsfn, NULL, napi_tsfn_nonblocking);
}

static void call_js(napi_env env, napi_value js_callback, void *context, void *data) {
  (void)context;
  (void)data;
  if (env == NULL || js_callback == NULL) return;
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_call_function(env, undefined, js_callback, 0, NULL, NULL);
}

static void box_stop(engine_box *box) {
  if (!box->engine) return;
  l4_engine_free(box->engine);
  box->engine = NULL;
  napi_release_threadsafe_function(box->tsfn, napi_tsfn_abort);
}

static void cleanup_hook(void *arg) { box_stop(arg); }

static void box_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  engine_box *box = data;
  box_stop(box);
  napi_remove_env_cleanup_hook(env, cleanup_hook, box);
  free(box);
}

/* createEngine(threads, onRecords) → engine */
static napi_value create_engine(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  uint32_t threads = 1;
  CALL(env, napi_get_value_uint32(env, argv[0], &threads));
  engine_box *box = calloc(1, sizeof *box);
  if (!box) THROW(env, "ERR_NATIVE", "out of memory");
  napi_value name;
  napi_create_string_utf8(env, "l4lb-native-records", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, box, call_js, &box->tsfn) != napi_ok) {
    free(box);
    THROW(env, "ERR_NATIVE", "cannot create the record callback");
  }
  /* Records must not keep the process alive; listeners and timers in JS decide that. */
  napi_unref_threadsafe_function(env, box->tsfn);
  char error[256] = "";
  box->engine = l4_engine_new((int)threads, notify_js, box, error, sizeof error);
  if (!box->engine) {
    napi_release_threadsafe_function(box->tsfn, napi_tsfn_abort);
    free(box);
    THROW(env, "ERR_NATIVE", error);
  }
  box->env = env;
  napi_add_env_cleanup_hook(env, cleanup_hook, box);
  napi_value out;
  CALL(env, napi_create_external(env, box, box_finalize, NULL, &out));
  return out;
}

static engine_box *box_arg(napi_env env, napi_value v) {
  engine_box *box = external_of(env, v);
  if (!box || !box->engine) {
    napi_throw_error(env, "ERR_NATIVE", "engine is stopped");
    return NULL;
  }
  return box;
}

static napi_value engine_threads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  engine_box *box = box_arg(env, argv[0]);
  if (!box) return NULL;
  napi_value out;
  napi_create_uint32(env, (uint32_t)l4_engine_threads(box->engine), &out);
  return out;
}

static napi_value stop_engine(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  engine_box *box = external_of(env, argv[0]);
  if (box) box_stop(box);
  return NULL;
}

/* keepAlive(engine, on): while native listeners are open the process must not exit (they are
   not libuv handles, so nothing else would keep the event loop alive). */
static napi_value keep_alive(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  engine_box *box = box_arg(env, argv[0]);
  if (!box) return NULL;
  bool on = false;
  CALL(env, napi_get_value_bool(env, argv[1], &on));
  if (on) napi_ref_threadsafe_function(env, box->tsfn);
  else napi_unref_threadsafe_function(env, box->tsfn);
  return NULL;
}

/* drain(engine, ArrayBuffer) → records copied (each 112 bytes) */
static napi_value drain(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  engine_box *box = box_arg(env, argv[0]);
  if (!box) return NULL;
  void *data;
  size_t length;
  CALL(env, napi_get_arraybuffer_info(env, argv[1], &data, &length));
  size_t n = l4_engine_drain(box->engine, data, length / sizeof(l4_record));
  l4_engine_reclaim(box->engine);
  napi_value out;
  napi_create_uint32(env, (uint32_t)n, &out);
  return out;
}

/* ---- counters ---------------------------------------------------------------------------- */

static void counters_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  l4_counters_release(hint);
}

static void no_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
}

/*
 * createCounters(engine, n, gen) → Int32Array over the engine's live counts (the pool's
 * `active`). Its buffer goes on past them: the live bytes per slot (l4_counters_bytes), n * 2
 * uint64 at l4_counters_bytes_offset(n), which index.ts views as a BigUint64Array.
 */
static napi_value create_counters(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args_of(env, info, 3, argv)) return NULL;
  engine_box *box = box_arg(env, argv[0]);
  if (!box) return NULL;
  uint32_t n = 0, gen = 0;
  CALL(env, napi_get_value_uint32(env, argv[1], &n));
  CALL(env, napi_get_value_uint32(env, argv[2], &gen));
  l4_counters *counters = l4_counters_new(box->engine, n, gen);
  if (!counters) THROW(env, "ERR_NATIVE", "out of memory");
  napi_value buffer, array;
  if (napi_create_external_arraybuffer(env, l4_counters_shared(counters), l4_counters_shared_length(n), counters_finalize, counters, &buffer) != napi_ok) {
    l4_counters_release(counters);
    THROW(env, "ERR_NATIVE", "cannot share counters (external ArrayBuffers unsupported)");
  }
  CALL(env, napi_create_typedarray(env, napi_int32_array, n, buffer, 0, &array));
  /* The view carries the block so publish/shutdownSlot can find it; the buffer owns it. */
  CALL(env, napi_wrap(env, array, counters, no_finalize, NULL, NULL));
  return array;
}

static l4_counters *counters_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_unwrap(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, "ERR_NATIVE", "not a counters array from createCounters");
    return NULL;
  }
  return p;
}

/* ---- services ---------------------------------------------------------------------------- */

typedef struct service_box {
  l4_service *service;
  int released;
} service_box;

static void service_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  service_box *box = data;
  /* Released explicitly by the TS side; a leaked handle only keeps its (stopped) struct. */
  free(box);
}

static napi_value create_service(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  engine_box *ebox = box_arg(env, argv[0]);
  if (!ebox) return NULL;
  uint32_t id = 0;
  CALL(env, napi_get_value_uint32(env, argv[1], &id));
  service_box *box = calloc(1, sizeof *box);
  if (!box) THROW(env, "ERR_NATIVE", "out of memory");
  box->service = l4_service_new(ebox->engine, id);
  if (!box->service) {
    free(box);
    THROW(env, "ERR_NATIVE", "out of memory");
  }
  napi_value out;
  CALL(env, napi_create_external(env, box, service_finalize, NULL, &out));
  return out;
}

static l4_service *service_arg(napi_env env, napi_value v) {
  service_box *box = external_of(env, v);
  if (!box || box->released) {
    napi_throw_error(env, "ERR_NATIVE", "service is released");
    return NULL;
  }
  return box->service;
}

/* listen(service, host, port, backlog) → { address, port } or throws with .code = errno name */
static napi_value service_listen(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args_of(env, info, 4, argv)) return NULL;
  l4_service *svc = service_arg(env, argv[0]);
  if (!svc) return NULL;
  uint32_t port = 0, backlog = 511;
  CALL(env, napi_get_value_uint32(env, argv[2], &port));
  CALL(env, napi_get_value_uint32(env, argv[3], &backlog));
  struct sockaddr_storage at, bound;
  socklen_t length = 0;
  if (!sockaddr_of(env, argv[1], port, &at, &length)) THROW(env, "ERR_NATIVE", "listen address is not an IP literal");
  int err = l4_service_listen(svc, (struct sockaddr *)&at, length, (int)backlog, &bound);
  if (err != 0) {
    napi_value error, code, message;
    napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &message);
    napi_create_int32(env, err, &code);
    napi_create_error(env, NULL, message, &error);
    napi_set_named_property(env, error, "errno", code);
    napi_throw(env, error);
    return NULL;
  }
  char text[64] = "";
  uint16_t bound_port;
  if (bound.ss_family == AF_INET) {
    inet_ntop(AF_INET, &((struct sockaddr_in *)&bound)->sin_addr, text, sizeof text);
    bound_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  } else {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&bound)->sin6_addr, text, sizeof text);
    bound_port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  }
  napi_value out, address, p;
  napi_create_object(env, &out);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address);
  napi_create_uint32(env, bound_port, &p);
  napi_set_named_property(env, out, "address", address);
  napi_set_named_property(env, out, "port", p);
  return out;
}

/* Reads a pick-data object: { algorithm, table?, points?, order?, weights?, ends?, slots?, totalWeight? }. */
static int pick_of(napi_env env, napi_value object, l4_pick_data *pick, uint32_t entry_count) {
  memset(pick, 0, sizeof *pick);
  uint32_t algorithm = 0;
  if (!get_u32(env, object, "algorithm", &algorithm) || algorithm > L4_ALG_RANDOM_TWO) return 0;
  pick->algorithm = (int)algorithm;
  pick->entry_count = entry_count;
  void *p;
  size_t n, points_length;
  if (!typed_prop(env, object, "table", napi_int32_array, &p, &n)) return 0;
  pick->table = p;
  pick->table_length = (uint32_t)n;
  if (!typed_prop(env, object, "points", napi_uint32_array, &p, &points_length)) return 0;
  pick->points = p;
  if (entry_count == 0) {
    /* nothing usable: every pick says so (an empty Maglev table is all -1) */
    memset(pick, 0, sizeof *pick);
    pick->algorithm = (int)algorithm;
    return 1;
  }
  if (algorithm == L4_ALG_RING && points_length != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (pick->table[i] < 0 || (uint32_t)pick->table[i] >= entry_count) return 0;
  const char *ranked[] = {"order", "weights", "ends", "slots"};
  const int32_t **dest[] = {&pick->order, &pick->weights, &pick->ends, &pick->rank_slots};
  for (int k = 0; k < 4; k++) {
    if (!typed_prop(env, object, ranked[k], napi_int32_array, &p, &n)) return 0;
    if (p && n != entry_count) return 0;
    *dest[k] = p;
  }
  if (algorithm == L4_ALG_LEAST_CONN || algorithm == L4_ALG_RANDOM_TWO) {
    if (entry_count > 0 && (!pick->order || !pick->weights || !pick->rank_slots)) return 0;
    if (algorithm == L4_ALG_RANDOM_TWO && entry_count > 0 && !pick->ends) return 0;
    for (uint32_t i = 0; i < entry_count; i++) {
      if (pick->order[i] < 0 || (uint32_t)pick->order[i] >= entry_count || pick->weights[i] < 1) return 0;
    }
  } else if (entry_count > 0 && pick->table_length == 0) {
    return 0;
  }
  get_u32(env, object, "totalWeight", &pick->total_weight);
  return 1;
}

/* Reads [{ address, port, slot }] into a new array (free it); 0 when malformed or out of memory. */
static int entries_of(napi_env env, napi_value array, l4_counters *counters, l4_entry **out, uint32_t *count) {
  *out = NULL;
  *count = 0;
  uint32_t n = 0;
  if (napi_get_array_length(env, array, &n) != napi_ok) return 0;
  l4_entry *entries = calloc(n ? n : 1, sizeof *entries);
  if (!entries) return 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item, host;
    uint32_t port = 0, slot = 0;
    if (napi_get_element(env, array, i, &item) != napi_ok || napi_get_named_property(env, item, "address", &host) != napi_ok ||
        !get_u32(env, item, "port", &port) || !get_u32(env, item, "slot", &slot) ||
        !sockaddr_of(env, host, port, &entries[i].addr, &entries[i].addr_length) || slot >= l4_counters_length(counters)) {
      free(entries);
      return 0;
    }
    entries[i].slot = (int32_t)slot;
  }
  *out = entries;
  *count = n;
  return 1;
}

static int get_double(napi_env env, napi_value object, const char *key, double *out) {
  napi_value v;
  napi_valuetype type;
  if (napi_get_named_property(env, object, key, &v) != napi_ok || napi_typeof(env, v, &type) != napi_ok || type != napi_number) return 0;
  return napi_get_value_double(env, v, out) == napi_ok;
}

/* { allow, deny: Uint32Array of 9-word blocks, maxConnsPerIp, ratePerSec, burst, maxSources }; views into JS memory. */
static int admission_of(napi_env env, napi_value object, l4_admit_config *out) {
  memset(out, 0, sizeof *out);
  void *p;
  size_t n;
  if (!typed_prop(env, object, "allow", napi_uint32_array, &p, &n) || n % 9 != 0) return 0;
  out->allow = p;
  out->allow_count = (uint32_t)(n / 9);
  if (!typed_prop(env, object, "deny", napi_uint32_array, &p, &n) || n % 9 != 0) return 0;
  out->deny = p;
  out->deny_count = (uint32_t)(n / 9);
  return get_u32(env, object, "maxConnsPerIp", &out->max_conns_per_ip) && get_double(env, object, "ratePerSec", &out->rate_per_sec) &&
         get_double(env, object, "burst", &out->burst) && get_u32(env, object, "maxSources", &out->max_sources) &&
         out->rate_per_sec >= 0;
}

/*
 * publish(service, counters, config, pick, entries: [{ address, port, slot }], backups?: { pick,
 * entries }, admission?). Throws on a malformed snapshot rather than publishing it.
 */
static napi_value service_publish(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!args_of(env, info, 7, argv)) return NULL;
  l4_service *svc = service_arg(env, argv[0]);
  if (!svc) return NULL;
  l4_counters *counters = counters_arg(env, argv[1]);
  if (!counters) return NULL;
  l4_service_config config;
  memset(&config, 0, sizeof config);
  uint32_t hash_port = 0, proxy_version = 0, crc = 0;
  if (!get_u32(env, argv[2], "connectTimeoutMs", &config.connect_timeout_ms) ||
      !get_u32(env, argv[2], "idleTimeoutMs", &config.idle_timeout_ms) || !get_u32(env, argv[2], "retries", &config.retries) ||
      !get_u32(env, argv[2], "maxConns", &config.max_conns) || !get_u32(env, argv[2], "hashPort", &hash_port) ||
      !get_u32(env, argv[2], "proxyVersion", &proxy_version) || !get_u32(env, argv[2], "proxyCrc32c", &crc))
    THROW(env, "ERR_NATIVE", "publish: bad config");
  config.hash_port = (int)hash_port;
  config.proxy_version = (int)proxy_version;
  config.proxy_crc32c = (int)crc;
  l4_entry *entries = NULL, *backup_entries = NULL;
  uint32_t count = 0;
  if (!entries_of(env, argv[4], counters, &entries, &count)) THROW(env, "ERR_NATIVE", "publish: bad backend entry");
  l4_pick_data pick;
  if (!pick_of(env, argv[3], &pick, count)) {
    free(entries);
    THROW(env, "ERR_NATIVE", "publish: bad pick data");
  }
  l4_backups backups;
  memset(&backups, 0, sizeof backups);
  napi_valuetype type;
  napi_typeof(env, argv[5], &type);
  if (type == napi_object) {
    napi_value backup_pick, backup_list;
    if (napi_get_named_property(env, argv[5], "entries", &backup_list) != napi_ok ||
        !entries_of(env, backup_list, counters, &backup_entries, &backups.entry_count) ||
        napi_get_named_property(env, argv[5], "pick", &backup_pick) != napi_ok ||
        !pick_of(env, backup_pick, &backups.pick, backups.entry_count)) {
      free(entries);
      free(backup_entries);
      THROW(env, "ERR_NATIVE", "publish: bad backups");
    }
    backups.entries = backup_entries;
  }
  l4_admit_config admit;
  napi_typeof(env, argv[6], &type);
  int has_admit = type == napi_object;
  if (has_admit && !admission_of(env, argv[6], &admit)) {
    free(entries);
    free(backup_entries);
    THROW(env, "ERR_NATIVE", "publish: bad admission");
  }
  int err = l4_service_publish(svc, counters, &config, &pick, entries, count, backups.entry_count ? &backups : NULL,
                               has_admit ? &admit : NULL);
  free(entries);
  free(backup_entries);
  if (err) THROW(env, "ERR_NATIVE", "publish failed");
  return NULL;
}

static napi_value service_stop_accepting(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  l4_service *svc = service_arg(env, argv[0]);
  if (svc) l4_service_stop_accepting(svc);
  return NULL;
}

static napi_value service_close_all(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  l4_service *svc = service_arg(env, argv[0]);
  if (!svc) return NULL;
  uint32_t reason = L4_SHUTDOWN;
  CALL(env, napi_get_value_uint32(env, argv[1], &reason));
  l4_service_close_all(svc, (int)reason);
  return NULL;
}

static napi_value service_shutdown_slot(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args_of(env, info, 4, argv)) return NULL;
  l4_service *svc = service_arg(env, argv[0]);
  if (!svc) return NULL;
  l4_counters *counters = counters_arg(env, argv[1]);
  if (!counters) return NULL;
  uint32_t slot = 0;
  int32_t reason = L4_BACKEND_DOWN;
  CALL(env, napi_get_value_uint32(env, argv[2], &slot));
  CALL(env, napi_get_value_int32(env, argv[3], &reason));
  if (reason >= L4_REASON_COUNT) reason = L4_BACKEND_DOWN;
  l4_service_shutdown_slot(svc, counters, (int32_t)slot, (int)reason);
  return NULL;
}

static napi_value service_active(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  l4_service *svc = service_arg(env, argv[0]);
  if (!svc) return NULL;
  napi_value out;
  napi_create_uint32(env, l4_service_active(svc), &out);
  return out;
}

static napi_value service_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  l4_service *svc = service_arg(env, argv[0]);
  if (!svc) return NULL;
  uint64_t stats[L4_STAT_COUNT];
  l4_service_stats(svc, stats);
  napi_value out;
  napi_create_array_with_length(env, L4_STAT_COUNT, &out);
  for (uint32_t i = 0; i < L4_STAT_COUNT; i++) {
    napi_value v;
    napi_create_double(env, (double)stats[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

static napi_value service_release(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  service_box *box = external_of(env, argv[0]);
  if (!box || box->released) return NULL;
  box->released = 1;
  l4_service_release(box->service);
  box->service = NULL;
  return NULL;
}

/* ---- golden-test helpers ----------------------------------------------------------------- */

/*
 * admitSequence(admission, ops: [admit: boolean, ip: string, nowMs: number][]) → Int32Array: runs
 * the ops through a fresh l4_admit (admit = lists, then per source; else release) and returns
 * each admit's enum l4_refusal (-1 admitted; -1 for releases). For the golden test against
 * lib/flow Admission.
 */
static napi_value admit_sequence(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  l4_admit_config config;
  if (!admission_of(env, argv[0], &config)) THROW(env, "ERR_NATIVE", "admitSequence: bad admission");
  uint32_t count = 0;
  CALL(env, napi_get_array_length(env, argv[1], &count));
  l4_admit *admit = l4_admit_new(&config);
  if (!admit) THROW(env, "ERR_NATIVE", "admitSequence: out of memory");
  napi_value buffer, out;
  void *data = NULL;
  if (napi_create_arraybuffer(env, (size_t)count * sizeof(int32_t), &data, &buffer) != napi_ok) {
    l4_admit_unref(admit);
    THROW(env, "ERR_NATIVE", "admitSequence: out of memory");
  }
  int32_t *results = data;
  for (uint32_t i = 0; i < count; i++) {
    napi_value op, kind, ip, when;
    bool is_admit = false;
    double now_ms = 0;
    struct sockaddr_storage ss;
    socklen_t length;
    if (napi_get_element(env, argv[1], i, &op) != napi_ok || napi_get_element(env, op, 0, &kind) != napi_ok ||
        napi_get_element(env, op, 1, &ip) != napi_ok || napi_get_element(env, op, 2, &when) != napi_ok ||
        napi_get_value_bool(env, kind, &is_admit) != napi_ok || napi_get_value_double(env, when, &now_ms) != napi_ok ||
        !sockaddr_of(env, ip, 0, &ss, &length)) {
      l4_admit_unref(admit);
      THROW(env, "ERR_NATIVE", "admitSequence: bad op");
    }
    l4_source source;
    l4_source_from_sockaddr(&source, (struct sockaddr *)&ss);
    results[i] = L4_ADMITTED;
    if (!is_admit) {
      l4_admit_release(admit, &source);
      continue;
    }
    results[i] = l4_admit_acl(admit, &source);
    if (results[i] == L4_ADMITTED) results[i] = l4_admit_take(admit, &source, now_ms);
  }
  l4_admit_unref(admit);
  CALL(env, napi_create_typedarray(env, napi_int32_array, count, buffer, 0, &out));
  return out;
}

/* pickMany(pick, entryCount, hashes: Uint32Array, active: Int32Array) → Int32Array */
static napi_value pick_many(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args_of(env, info, 4, argv)) return NULL;
  uint32_t entry_count = 0;
  CALL(env, napi_get_value_uint32(env, argv[1], &entry_count));
  l4_pick_data pick;
  if (!pick_of(env, argv[0], &pick, entry_count)) THROW(env, "ERR_NATIVE", "pickMany: bad pick data");
  void *hashes, *active;
  size_t count, active_length;
  if (!typed_of(env, argv[2], napi_uint32_array, &hashes, &count) || !typed_of(env, argv[3], napi_int32_array, &active, &active_length))
    THROW(env, "ERR_NATIVE", "pickMany: bad arrays");
  if (pick.rank_slots) {
    for (uint32_t i = 0; i < entry_count; i++)
      if (pick.rank_slots[i] < 0 || (size_t)pick.rank_slots[i] >= active_length) THROW(env, "ERR_NATIVE", "pickMany: slot outside active");
  }
  napi_value buffer, out;
  void *data;
  CALL(env, napi_create_arraybuffer(env, count * 4, &data, &buffer));
  l4_pick_many(&pick, hashes, data, count, active);
  CALL(env, napi_create_typedarray(env, napi_int32_array, count, buffer, 0, &out));
  return out;
}

/* murmur3(Uint8Array, seed) → number */
static napi_value murmur3(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  void *data;
  size_t length;
  uint32_t seed = 0;
  if (!typed_of(env, argv[0], napi_uint8_array, &data, &length)) THROW(env, "ERR_NATIVE", "murmur3: bytes");
  CALL(env, napi_get_value_uint32(env, argv[1], &seed));
  napi_value out;
  napi_create_uint32(env, l4_murmur3(data, (uint32_t)length, seed), &out);
  return out;
}

/* proxyHeader(version, srcHost, srcPort, dstHost, dstPort, id, crc32c) → Buffer, as the engine sends it */
static napi_value proxy_header(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!args_of(env, info, 7, argv)) return NULL;
  uint32_t version = 0, sport = 0, dport = 0;
  bool crc = false;
  CALL(env, napi_get_value_uint32(env, argv[0], &version));
  CALL(env, napi_get_value_uint32(env, argv[2], &sport));
  CALL(env, napi_get_value_uint32(env, argv[4], &dport));
  CALL(env, napi_get_value_bool(env, argv[6], &crc));
  struct sockaddr_storage s, d;
  socklen_t sl, dl;
  if (!sockaddr_of(env, argv[1], sport, &s, &sl) || !sockaddr_of(env, argv[3], dport, &d, &dl))
    THROW(env, "ERR_NATIVE", "proxyHeader: addresses");
  char id[L4_UNIQUE_ID_LENGTH + 1] = "";
  size_t idn = 0;
  CALL(env, napi_get_value_string_latin1(env, argv[5], id, sizeof id, &idn));
  if (idn != L4_UNIQUE_ID_LENGTH) THROW(env, "ERR_NATIVE", "proxyHeader: id is 16 characters");
  l4_endpoint src, dst;
  l4_endpoint_from_sockaddr(&src, &s);
  l4_endpoint_from_sockaddr(&dst, &d);
  uint8_t header[L4_MAX_HEADER];
  size_t n = version == 1 ? l4_proxy_v1(header, &src, &dst) : l4_proxy_v2(header, &src, &dst, id, crc);
  napi_value out;
  void *copy;
  CALL(env, napi_create_buffer_copy(env, n, header, &copy, &out));
  return out;
}

/*
 * trimMemory() → boolean: glibc gives free heap pages back to the kernel (malloc_trim). The
 * bulk tunables bin/l4lb sets (trim_threshold 128 MiB) keep glibc from trimming by itself, so
 * after many connections closed their native handles' memory stays resident until asked
 * (lib/runtime/reclaim.ts). true when memory was released.
 */
static napi_value trim_memory(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
#ifdef __GLIBC__
  napi_get_boolean(env, malloc_trim(0) == 1, &out);
#else
  napi_get_boolean(env, false, &out);
#endif
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"createEngine", create_engine},     {"engineThreads", engine_threads},
      {"stopEngine", stop_engine},         {"drain", drain},
      {"keepAlive", keep_alive},
      {"createCounters", create_counters}, {"createService", create_service},
      {"listen", service_listen},          {"publish", service_publish},
      {"stopAccepting", service_stop_accepting}, {"closeAll", service_close_all},
      {"shutdownSlot", service_shutdown_slot},   {"active", service_active},
      {"stats", service_stats},            {"releaseService", service_release},
      {"pickMany", pick_many},             {"murmur3", murmur3},
      {"proxyHeader", proxy_header},       {"trimMemory", trim_memory},
      {"admitSequence", admit_sequence},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &fn) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
