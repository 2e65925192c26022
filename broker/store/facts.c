/* A device's facts for asset records (inv_facts, inv_macs): serial, OS, CPU, memory, disk and
 * MACs, worked out from its latest inventory tables whenever one of them changes. */
#include <jansson.h>

#include "internal.h"
#include "tt/hex.h"

/* The tables the facts come from: a put that changes none of them leaves the facts as they are. */
static const char *const k_fact_tables[] = {"system_info", "os_version", "memory_info", "mounts",
                                            "interface_details"};
/* Filesystems that hold no disk of their own (images, memory, network): left out of the disk size. */
static const char *const k_not_disk[] = {"squashfs", "iso9660", "tmpfs", "devtmpfs", "overlay", "nfs", "nfs4",
                                         "cifs", "smb3", "fuse.sshfs", "ramfs", "udf"};
/* What firmware writes when nobody set a serial: two machines sharing one are not one device. */
static const char *const k_no_serial[] = {"", "0", "none", "n/a", "na", "default string", "system serial number",
                                          "to be filled by o.e.m.", "not specified", "not applicable",
                                          "0123456789", "123456789", "chassis serial number", "serial"};

static const store_sql_t k_sql[] = {
  {ST_FACTS_GET, "SELECT d.id, d.hostname, d.version, d.last_seen_ms, coalesce(f.serial, ''), coalesce(f.os, ''),"
      " coalesce(f.cpu, ''), coalesce(f.memory, 0), coalesce(f.disk, 0)"
      " FROM devices d LEFT JOIN inv_facts f ON f.device = d.id WHERE d.id = ?1"},
  {ST_FACTS_PUT, "INSERT INTO inv_facts(device, version, serial, serial_key, os, cpu, memory, disk)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(device) DO UPDATE SET version = excluded.version,"
      " serial = excluded.serial, serial_key = excluded.serial_key, os = excluded.os, cpu = excluded.cpu,"
      " memory = excluded.memory, disk = excluded.disk"},
  {ST_FACTS_DROP, "DELETE FROM inv_facts WHERE device = ?1"},
  {ST_FACTS_STALE, "SELECT device FROM inv_facts WHERE version = 0 ORDER BY device"},
  {ST_FACTS_LATEST, "SELECT coalesce(max(id), 0) FROM inv_versions WHERE device = ?1"},
  {ST_MACS_DEL, "DELETE FROM inv_macs WHERE device = ?1"},
  {ST_MACS_ADD, "INSERT OR IGNORE INTO inv_macs(device, mac) VALUES(?1, ?2)"},
};

/* Prepared with the asset statements (assets.c calls this). */
int store_prepare_facts(broker_store_t *s);
int store_prepare_facts(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

bool store_fact_table(const char *name) {
  for (size_t i = 0; i < sizeof k_fact_tables / sizeof k_fact_tables[0]; i++)
    if (strcmp(name, k_fact_tables[i]) == 0) return true;
  return false;
}

/* ---- keys: the same spelling on both sides of a match ----------------------------------- */

/* Trimmed, ASCII lower-case (SQLite's lower() is ASCII too, so devices' hostnames index the same). */
void store_key_norm(const char *in, char *out, size_t cap) {
  size_t n = strlen(in), a = 0;
  while (a < n && (in[a] == ' ' || in[a] == '\t')) a++;
  while (n > a && (in[n - 1] == ' ' || in[n - 1] == '\t')) n--;
  size_t k = 0;
  for (size_t i = a; i < n && k + 1 < cap; i++) {
    char c = in[i];
    out[k++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  out[k] = '\0';
}

void store_serial_key(const char *serial, char *out, size_t cap) {
  store_key_norm(serial, out, cap);
  for (size_t i = 0; i < sizeof k_no_serial / sizeof k_no_serial[0]; i++)
    if (strcmp(out, k_no_serial[i]) == 0) out[0] = '\0';
}

bool store_mac_norm(const char *in, char out[18]) {
  uint8_t m[6] = {0};
  int k = 0;
  char sep = 0;
  for (const char *p = in; *p; p++) {
    int v = tt_hex_value((unsigned char)*p);
    if (v >= 0) {
      if (k == 12) return false;
      m[k / 2] = (uint8_t)(m[k / 2] << 4 | v);
      k++;
    } else if ((*p == ':' || *p == '-' || *p == '.') && k > 0 && (sep == 0 || sep == *p)) {
      sep = *p;
    } else if (*p != ' ' || k != 0) {
      return false;
    }
  }
  if (k != 12) return false;
  bool zero = true;
  for (int i = 0; i < 6; i++) zero &= m[i] == 0;
  if (zero) return false; /* loopback and tunnels: every device has it */
  tt_hex_sep(out, 18, m, 6, ':');
  return true;
}

/* ---- the tables ------------------------------------------------------------------------- */

typedef struct {
  char serial[STORE_FACT_MAX + 1];
  char os[STORE_FACT_MAX + 1];
  char cpu[STORE_FACT_MAX + 1];
  int64_t physical, total, disk, root;
  char (*macs)[18];
  size_t nmacs;
} facts_t;

#define FACTS_MACS_MAX 64 /* interfaces kept per device: a host with more is a router, not a desk */

/* The column's index in a table's "columns", or -1. */
static int col_of(json_t *cols, const char *name) {
  size_t i;
  json_t *c;
  json_array_foreach(cols, i, c) if (json_is_string(c) && strcmp(json_string_value(c), name) == 0) return (int)i;
  return -1;
}

static const char *cell(json_t *row, int col) {
  if (col < 0) return "";
  const char *v = json_string_value(json_array_get(row, (size_t)col));
  return v != NULL ? v : "";
}

/* A decimal count of bytes (or blocks), 0 when it is not one or would overflow. */
static int64_t num(const char *v) {
  int64_t n = 0;
  if (!*v) return 0;
  for (const char *p = v; *p; p++) {
    if (*p < '0' || *p > '9' || n > (INT64_MAX - 9) / 10) return 0;
    n = n * 10 + (*p - '0');
  }
  return n;
}

/* Text a table brought, cut at a whole character to fit, made safe to store and show. */
static void fact_text(char *dst, size_t cap, const char *v) {
  tt_utf8_sanitize(dst, cap, v, strlen(v));
  for (char *p = dst; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
}

static void from_table(facts_t *f, const char *name, json_t *cols, json_t *rows) {
  json_t *row0 = json_array_get(rows, 0);
  if (strcmp(name, "system_info") == 0 && row0) {
    fact_text(f->serial, sizeof f->serial, cell(row0, col_of(cols, "hardware_serial")));
    fact_text(f->cpu, sizeof f->cpu, cell(row0, col_of(cols, "cpu_brand")));
    f->physical = num(cell(row0, col_of(cols, "physical_memory")));
  } else if (strcmp(name, "os_version") == 0 && row0) {
    char both[2 * STORE_FACT_MAX + 2];
    const char *n = cell(row0, col_of(cols, "name")), *v = cell(row0, col_of(cols, "version"));
    snprintf(both, sizeof both, "%.*s%s%.*s", (int)STORE_FACT_MAX, n, *n && *v ? " " : "", (int)STORE_FACT_MAX, v);
    fact_text(f->os, sizeof f->os, both);
  } else if (strcmp(name, "memory_info") == 0 && row0) {
    f->total = num(cell(row0, col_of(cols, "memory_total")));
  } else if (strcmp(name, "mounts") == 0) {
    int cdev = col_of(cols, "device"), cpath = col_of(cols, "path"), ctype = col_of(cols, "type");
    int cbs = col_of(cols, "blocks_size"), cb = col_of(cols, "blocks");
    size_t i, k;
    json_t *r;
    /* Each block device once (bind mounts and btrfs subvolumes show one several times). */
    json_array_foreach(rows, i, r) {
      const char *dev = cell(r, cdev), *type = cell(r, ctype);
      int64_t bs = num(cell(r, cbs)), blocks = num(cell(r, cb));
      int64_t size = bs > 0 && blocks <= INT64_MAX / bs ? bs * blocks : 0;
      if (strcmp(cell(r, cpath), "/") == 0) f->root = size;
      if (strncmp(dev, "/dev/", 5) != 0) continue;
      bool skip = false;
      for (k = 0; k < sizeof k_not_disk / sizeof k_not_disk[0] && !skip; k++) skip = strcmp(type, k_not_disk[k]) == 0;
      for (k = 0; k < i && !skip; k++) skip = strcmp(cell(json_array_get(rows, k), cdev), dev) == 0;
      if (!skip && f->disk <= INT64_MAX - size) f->disk += size;
    }
  } else if (strcmp(name, "interface_details") == 0) {
    int cmac = col_of(cols, "mac");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
      char m[18];
      if (f->nmacs >= FACTS_MACS_MAX || !store_mac_norm(cell(r, cmac), m)) continue;
      memcpy(f->macs[f->nmacs++], m, sizeof m);
    }
  }
}

static int table_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body, size_t len) {
  (void)version;
  (void)received_ms;
  json_t *j = json_loadb((const char *)body, len, 0, NULL);
  json_t *cols = json_object_get(j, "columns"), *rows = json_object_get(j, "rows");
  /* The shape push.c checked before it was stored: anything else is skipped, not trusted. */
  if (json_is_array(cols) && json_is_array(rows)) from_table(ctx, name, cols, rows);
  json_decref(j);
  return 0;
}

static int facts_write(broker_store_t *s, const char *device, int64_t version, const facts_t *f) {
  char key[STORE_FACT_MAX + 1];
  store_serial_key(f->serial, key, sizeof key);
  sqlite3_stmt *st = s->st[ST_FACTS_PUT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, version, &rc);
  bind_text(st, 3, f->serial, &rc);
  bind_text(st, 4, key, &rc);
  bind_text(st, 5, f->os, &rc);
  bind_text(st, 6, f->cpu, &rc);
  bind_i64(st, 7, f->physical > 0 ? f->physical : f->total, &rc);
  bind_i64(st, 8, f->disk > 0 ? f->disk : f->root, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "facts_put", rc);
  st = s->st[ST_MACS_DEL];
  rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "macs_del", rc);
  for (size_t i = 0; i < f->nmacs; i++) {
    st = s->st[ST_MACS_ADD];
    rc = SQLITE_OK;
    bind_text(st, 1, device, &rc);
    bind_text(st, 2, f->macs[i], &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) return constraint_fail(s, "macs_add", rc);
  }
  return 0;
}

static int latest_version(broker_store_t *s, const char *device, int64_t *v) {
  sqlite3_stmt *st = s->st[ST_FACTS_LATEST];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, device, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
  else ret = sql_fail(s, "facts_latest", rc);
  done(st);
  return ret;
}

int store_facts_refresh(broker_store_t *s, const char *device) {
  if (device == NULL || strnlen(device, TT_NAME_MAX + 1) - 1 >= TT_NAME_MAX) return TT_EINVAL;
  int64_t version = 0;
  int ret = latest_version(s, device, &version);
  if (ret != 0) return ret;
  if (version == 0) { /* no inventory (any more): no facts */
    sqlite3_stmt *st = s->st[ST_FACTS_DROP];
    int rc = SQLITE_OK;
    bind_text(st, 1, device, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    st = s->st[ST_MACS_DEL];
    bind_text(st, 1, device, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s, "facts_drop", rc);
  }
  facts_t f;
  memset(&f, 0, sizeof f);
  f.macs = calloc(FACTS_MACS_MAX, sizeof *f.macs);
  if (f.macs == NULL) return TT_ENOMEM;
  for (size_t i = 0; i < sizeof k_fact_tables / sizeof k_fact_tables[0] && ret == 0; i++) {
    ret = store_inv_table(s, device, k_fact_tables[i], 0, table_cb, &f);
    if (ret == TT_ENOTFOUND) ret = 0;
  }
  if (ret == 0) ret = facts_write(s, device, version, &f);
  free(f.macs);
  return ret;
}

int store_facts_backfill(broker_store_t *s) {
  /* The names first, then the work: the walk never reads the rows it rewrites. */
  char (*devs)[STORE_NAME_MAX] = NULL;
  size_t n = 0, cap = 0;
  int ret = 0;
  sqlite3_stmt *st = s->st[ST_FACTS_STALE];
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      void *p = realloc(devs, nc * sizeof *devs);
      if (p == NULL) {
        ret = TT_ENOMEM;
        break;
      }
      devs = p;
      cap = nc;
    }
    col_text(st, 0, devs[n], sizeof devs[n]);
    n++;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) ret = sql_fail(s, "facts_stale", rc);
  for (size_t i = 0; i < n && ret == 0; i++) {
    if ((ret = tx_begin(s)) != 0) break;
    ret = store_facts_refresh(s, devs[i]);
    if (ret == 0) ret = tx_commit(s);
    else tx_rollback(s);
    if (ret == TT_EIO) { /* one device's damaged inventory does not stop the broker */
      TT_WARN(MOD, "facts not worked out", "device=%s", devs[i]);
      ret = 0;
    }
  }
  if (n > 0) TT_INFO(MOD, "inventory facts worked out", "devices=%zu", n);
  free(devs);
  return ret;
}

int store_device_facts(broker_store_t *s, const char *device, store_device_facts_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_FACTS_GET];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, device, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    col_text(st, 0, out->device, sizeof out->device);
    col_text(st, 1, out->hostname, sizeof out->hostname);
    col_text(st, 2, out->agent_version, sizeof out->agent_version);
    out->last_seen_ms = sqlite3_column_int64(st, 3);
    col_text(st, 4, out->serial, sizeof out->serial);
    col_text(st, 5, out->os, sizeof out->os);
    col_text(st, 6, out->cpu, sizeof out->cpu);
    out->memory = sqlite3_column_int64(st, 7);
    out->disk = sqlite3_column_int64(st, 8);
  } else if (rc == SQLITE_DONE) {
    ret = TT_ENOTFOUND;
  } else {
    ret = sql_fail(s, "facts_get", rc);
  }
  done(st);
  return ret;
}
