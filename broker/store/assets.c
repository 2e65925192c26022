/* Asset records: the admins' push in Snipe-IT's columns, imported in one transaction with a
 * match report, exported joined with the devices' facts, and the --where filter of devices. */
#include <jansson.h>
#include <strings.h>

#include "internal.h"
#include "tt/utf8.h"

/* Migration 8 spells these as literals (SQL is never formatted with values): keep them in step. */
_Static_assert(STORE_ASSET_TAG_MAX == 128, "asset_records.tag CHECK says 1..128");
_Static_assert(STORE_ASSET_CELL_MAX == 2048, "asset_records fields CHECK say <= 2048");
_Static_assert(STORE_ASSET_COLUMN_MAX == 128, "asset_custom.name CHECK says 1..128");
_Static_assert(STORE_FACT_MAX == 256, "inv_facts CHECKs say <= 256");

/* Devices a key is looked up for: one is a match, two are a conflict; a third adds nothing. */
#define CAND_MAX 3
/* Devices the export's second half looks at per page before it hands back a cursor, so a
 * fleet whose devices all have records costs bounded work per request. */
#define EXPORT_SCAN_MAX 4096u

const char *const store_asset_columns[STORE_AF__COUNT] = {
    "Asset Tag", "Name",       "Serial",         "Model",         "Manufacturer",    "Category",
    "Location",  "Department", "Checked Out To", "Purchase Date", "Warranty Months", "Notes"};
const char *const store_asset_short[STORE_AF__COUNT] = {
    "asset_tag", "name",       "serial", "model",         "manufacturer",    "category",
    "location",  "department", "owner",  "purchase_date", "warranty_months", "notes"};
/* asset_records' columns, by field (the same order as the arrays above). */
static const char *const k_col[STORE_AF__COUNT] = {
    "tag",      "name",       "serial", "model",         "manufacturer",    "category",
    "location", "department", "owner",  "purchase_date", "warranty_months", "notes"};
static const char *const k_match[] = {"serial", "hostname", "mac", "asset_tag"};

#define REC_COLS "tag, name, serial, model, manufacturer, category, location, department, owner," \
                 " purchase_date, warranty_months, notes, match_kind, match_value"

static const store_sql_t k_sql[] = {
  {ST_ASSET_GET, "SELECT " REC_COLS " FROM asset_records WHERE tag = ?1"},
  {ST_ASSET_UPSERT, "INSERT INTO asset_records(" REC_COLS ", updated_ms, updated_by)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
      " ON CONFLICT(tag) DO UPDATE SET name = excluded.name, serial = excluded.serial, model = excluded.model,"
      " manufacturer = excluded.manufacturer, category = excluded.category, location = excluded.location,"
      " department = excluded.department, owner = excluded.owner, purchase_date = excluded.purchase_date,"
      " warranty_months = excluded.warranty_months, notes = excluded.notes, match_kind = excluded.match_kind,"
      " match_value = excluded.match_value, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by"},
  {ST_ASSET_CUSTOM_GET, "SELECT name, value FROM asset_custom WHERE tag = ?1 ORDER BY name"},
  {ST_ASSET_CUSTOM_SET, "INSERT INTO asset_custom(tag, name, value) VALUES(?1, ?2, ?3)"
      " ON CONFLICT(tag, name) DO UPDATE SET value = excluded.value"},
  {ST_ASSET_CUSTOM_DEL, "DELETE FROM asset_custom WHERE tag = ?1 AND name = ?2"},
  {ST_ASSET_CUSTOM_NAMES, "SELECT DISTINCT name FROM asset_custom ORDER BY name"},
  {ST_ASSET_PAGE, "SELECT " REC_COLS " FROM asset_records WHERE tag > ?1 ORDER BY tag LIMIT ?2"},
  /* The devices a key finds (CAND_MAX at most). */
  {ST_ASSET_BY_SERIAL, "SELECT device FROM inv_facts WHERE serial_key = ?1 AND serial_key <> ''"
      " ORDER BY device LIMIT 3"},
  {ST_ASSET_BY_HOST, "SELECT id FROM devices WHERE lower(hostname) = ?1 AND ?1 <> '' ORDER BY id LIMIT 3"},
  {ST_ASSET_BY_MAC, "SELECT DISTINCT device FROM inv_macs WHERE mac = ?1 ORDER BY device LIMIT 3"},
  /* The records whose key finds a device: its serial, its hostname, any of its MACs. */
  {ST_ASSET_OF_DEVICE,
      "SELECT r.tag FROM inv_facts f JOIN asset_records r ON r.match_kind = 0 AND r.match_value = f.serial_key"
      "  WHERE f.device = ?1 AND f.serial_key <> '' AND r.match_value <> ''"
      " UNION SELECT r.tag FROM devices d JOIN asset_records r ON r.match_kind = 1 AND r.match_value = lower(d.hostname)"
      "  WHERE d.id = ?1 AND r.match_value <> ''"
      " UNION SELECT r.tag FROM inv_macs m JOIN asset_records r ON r.match_kind = 2 AND r.match_value = m.mac"
      "  WHERE m.device = ?1 AND r.match_value <> ''"},
};

int store_prepare_assets(broker_store_t *s) {
  int rc = store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]);
  return rc == 0 ? store_prepare_facts(s) : rc;
}

/* ---- names and checks --------------------------------------------------------------------- */

const char *store_match_name(store_match_t m) {
  return (unsigned)m < sizeof k_match / sizeof k_match[0] ? k_match[m] : "?";
}

int store_match_parse(const char *s, store_match_t *m) {
  for (size_t i = 0; i < sizeof k_match / sizeof k_match[0]; i++)
    if (s != NULL && strcmp(s, k_match[i]) == 0) {
      *m = (store_match_t)i;
      return 0;
    }
  return TT_EINVAL;
}

bool store_asset_text_ok(const char *s, size_t cap, bool multiline) {
  if (s == NULL) return false;
  size_t n = strnlen(s, cap + 1);
  if (n > cap) return false;
  const uint8_t *p = (const uint8_t *)s;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t k = tt_utf8_decode(p + i, n - i, &cp);
    if (k == 0) return false;
    if (cp < 0x20 && cp != '\t' && !(multiline && (cp == '\n' || cp == '\r'))) return false;
    if (cp == 0x7f) return false;
    i += k;
  }
  return true;
}

static size_t field_cap(int f) { return f == STORE_AF_TAG ? STORE_ASSET_TAG_MAX : STORE_ASSET_CELL_MAX; }

static bool field_ok(int f, const char *v) {
  if (!store_asset_text_ok(v, field_cap(f), f == STORE_AF_NOTES)) return false;
  if (f == STORE_AF_WARRANTY) {
    if (strlen(v) > 4) return false;
    for (const char *p = v; *p; p++)
      if (*p < '0' || *p > '9') return false;
  }
  return true;
}

int store_asset_cond_parse(char *s, store_asset_cond_t *c) {
  memset(c, 0, sizeof *c);
  char *eq = s != NULL ? strchr(s, '=') : NULL;
  if (eq == NULL || eq == s) return TT_EINVAL;
  *eq = '\0';
  c->field = -1;
  c->value = eq + 1;
  for (int i = 0; i < STORE_AF__COUNT && c->field < 0; i++)
    if (strcasecmp(s, store_asset_short[i]) == 0 || strcasecmp(s, store_asset_columns[i]) == 0) c->field = i;
  if (c->field < 0) {
    if (!store_asset_text_ok(s, STORE_ASSET_COLUMN_MAX, false)) return TT_EINVAL;
    c->custom = s;
  }
  return store_asset_text_ok(c->value, STORE_ASSET_CELL_MAX, false) ? 0 : TT_EINVAL;
}

/* ---- a record as stored ------------------------------------------------------------------- */

typedef struct {
  char name[STORE_ASSET_COLUMN_MAX + 1];
  char value[STORE_ASSET_CELL_MAX + 1];
} kv_buf_t;

typedef struct {
  char f[STORE_AF__COUNT][STORE_ASSET_CELL_MAX + 1];
  int kind;
  char key[STORE_ASSET_CELL_MAX + 1];
  kv_buf_t custom[STORE_ASSET_CUSTOM_MAX];
  store_asset_kv_t kv[STORE_ASSET_CUSTOM_MAX];
  size_t ncustom;
} rec_t;

static void rec_from_row(sqlite3_stmt *st, rec_t *r) {
  for (int i = 0; i < STORE_AF__COUNT; i++) col_text(st, i, r->f[i], sizeof r->f[i]);
  r->kind = (int)sqlite3_column_int64(st, STORE_AF__COUNT);
  col_text(st, STORE_AF__COUNT + 1, r->key, sizeof r->key);
  r->ncustom = 0;
}

static int rec_custom(broker_store_t *s, rec_t *r) {
  sqlite3_stmt *st = s->st[ST_ASSET_CUSTOM_GET];
  int rc = SQLITE_OK;
  r->ncustom = 0;
  bind_text(st, 1, r->f[STORE_AF_TAG], &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || r->ncustom >= STORE_ASSET_CUSTOM_MAX) continue;
    kv_buf_t *b = &r->custom[r->ncustom];
    col_text(st, 0, b->name, sizeof b->name);
    col_text(st, 1, b->value, sizeof b->value);
    r->kv[r->ncustom] = (store_asset_kv_t){b->name, b->value};
    r->ncustom++;
  }
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "asset_custom_get", rc);
}

/* The record with this tag: 1 found, 0 none, or an error. */
static int rec_get(broker_store_t *s, const char *tag, rec_t *r) {
  sqlite3_stmt *st = s->st[ST_ASSET_GET];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, tag, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    rec_from_row(st, r);
    ret = 1;
  } else if (rc != SQLITE_DONE) {
    ret = sql_fail(s, "asset_get", rc);
  }
  done(st);
  if (ret == 1) {
    int c = rec_custom(s, r);
    if (c != 0) return c;
  }
  return ret;
}

/* ---- the join ----------------------------------------------------------------------------- */

/* The devices a key finds, up to CAND_MAX: *n says how many. */
static int candidates(broker_store_t *s, int kind, const char *key, char (*dev)[STORE_NAME_MAX], size_t *n) {
  *n = 0;
  store_stmt_t which = kind == STORE_MATCH_SERIAL ? ST_ASSET_BY_SERIAL
                       : kind == STORE_MATCH_HOSTNAME ? ST_ASSET_BY_HOST
                       : kind == STORE_MATCH_MAC      ? ST_ASSET_BY_MAC
                                                      : ST__COUNT;
  if (which == ST__COUNT || key[0] == '\0') return 0;
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  bind_text(st, 1, key, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && *n < CAND_MAX) col_text(st, 0, dev[(*n)++], STORE_NAME_MAX);
  }
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "asset_candidates", rc);
}

/* The device a stored record is joined to (the only one its key finds): 1 and dev, or 0. */
static int joined_device(broker_store_t *s, int kind, const char *key, char dev[STORE_NAME_MAX]) {
  char c[CAND_MAX][STORE_NAME_MAX];
  size_t n = 0;
  int ret = candidates(s, kind, key, c, &n);
  if (ret != 0) return ret;
  if (n != 1) return 0;
  memcpy(dev, c[0], STORE_NAME_MAX);
  return 1;
}

typedef int (*tag_cb)(void *ctx, const char *tag);

/* Every record whose key finds device (whether or not that key finds others too). */
static int records_of_device(broker_store_t *s, const char *device, char (*tags)[STORE_ASSET_TAG_MAX + 1], size_t cap,
                             size_t *n) {
  sqlite3_stmt *st = s->st[ST_ASSET_OF_DEVICE];
  int rc = SQLITE_OK;
  *n = 0;
  bind_text(st, 1, device, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && *n < cap) col_text(st, 0, tags[(*n)++], STORE_ASSET_TAG_MAX + 1);
  }
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "asset_of_device", rc);
}

#define TAGS_PER_DEVICE 16 /* records looked at per device: past two it is a conflict anyway */

/* The records joined to device (found by its key and by nothing else), at most cap. */
static int joined_records(broker_store_t *s, const char *device, rec_t *tmp, char (*out)[STORE_ASSET_TAG_MAX + 1],
                          size_t cap, size_t *n) {
  char tags[TAGS_PER_DEVICE][STORE_ASSET_TAG_MAX + 1];
  size_t nt = 0;
  *n = 0;
  int ret = records_of_device(s, device, tags, TAGS_PER_DEVICE, &nt);
  for (size_t i = 0; i < nt && ret == 0; i++) {
    sqlite3_stmt *st = s->st[ST_ASSET_GET];
    int rc = SQLITE_OK;
    bool found = false;
    bind_text(st, 1, tags[i], &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      rec_from_row(st, tmp);
      found = true;
    } else if (rc != SQLITE_DONE) {
      ret = sql_fail(s, "asset_get", rc);
    }
    done(st);
    if (!found || ret != 0) continue;
    char dev[STORE_NAME_MAX];
    int j = joined_device(s, tmp->kind, tmp->key, dev);
    if (j < 0) ret = j;
    else if (j == 1 && strcmp(dev, device) == 0 && *n < cap) memcpy(out[(*n)++], tags[i], STORE_ASSET_TAG_MAX + 1);
  }
  return ret;
}

/* Policy groups (store.h): the one record joined to the device, its Department, Location
 * and a custom field named "group". */
int store_device_groups(broker_store_t *s, const char *device, store_device_groups_t *out) {
  memset(out, 0, sizeof *out);
  rec_t *tmp = malloc(sizeof *tmp);
  if (tmp == NULL) return TT_ENOMEM;
  char tags[2][STORE_ASSET_TAG_MAX + 1];
  size_t n = 0;
  int ret = joined_records(s, device, tmp, tags, 2, &n);
  if (ret == 0 && n == 1) {
    int got = rec_get(s, tags[0], tmp);
    if (got < 0) ret = got;
    else if (got == 1) {
      snprintf(out->department, sizeof out->department, "%s", tmp->f[STORE_AF_DEPARTMENT]);
      snprintf(out->location, sizeof out->location, "%s", tmp->f[STORE_AF_LOCATION]);
      for (size_t i = 0; i < tmp->ncustom; i++)
        if (strcasecmp(tmp->custom[i].name, "group") == 0)
          snprintf(out->group, sizeof out->group, "%s", tmp->custom[i].value);
    }
  }
  free(tmp);
  return ret;
}

/* ---- import ------------------------------------------------------------------------------- */

typedef struct {
  char device[STORE_NAME_MAX];
  size_t row;
} pair_t;

static int by_device(const void *a, const void *b) {
  const pair_t *x = a, *y = b;
  int c = strcmp(x->device, y->device);
  return c ? c : (x->row > y->row) - (x->row < y->row);
}

static const store_asset_row_t *g_sort_rows; /* qsort has no context argument */
static int by_tag(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  int c = strcasecmp(g_sort_rows[x].f[STORE_AF_TAG], g_sort_rows[y].f[STORE_AF_TAG]);
  return c ? c : (x > y) - (x < y);
}

static const char *row_custom(const store_asset_row_t *r, const char *name) {
  for (size_t i = 0; i < r->ncustom; i++)
    if (strcasecmp(r->custom[i].name, name) == 0) return r->custom[i].value;
  return NULL;
}

static bool row_empty(const store_asset_row_t *r) {
  for (int f = 0; f < STORE_AF__COUNT; f++)
    if (r->f[f] != NULL && r->f[f][0]) return false;
  for (size_t i = 0; i < r->ncustom; i++)
    if (r->custom[i].value[0]) return false;
  return true;
}

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), TT_EINVAL)

/* Every row checked before anything is read or written: a refused import has done nothing. */
static int rows_check(const store_asset_import_t *opt, const store_asset_row_t *rows, size_t n, bool *skip,
                      char *why, size_t whylen) {
  for (size_t i = 0; i < n; i++) {
    const store_asset_row_t *r = &rows[i];
    if (r->f[STORE_AF_TAG] == NULL) return WHY("the file has no '%s' column", store_asset_columns[STORE_AF_TAG]);
    for (int f = 0; f < STORE_AF__COUNT; f++)
      if (r->f[f] != NULL && !field_ok(f, r->f[f]))
        return WHY("line %u: %s is not valid (%s)", r->line, store_asset_columns[f],
                   f == STORE_AF_WARRANTY ? "a number of months, at most 4 digits"
                   : f == STORE_AF_TAG    ? "text of 1 to 128 bytes on one line"
                                          : "UTF-8 text of at most 2048 bytes, no control characters");
    if (r->ncustom > STORE_ASSET_CUSTOM_MAX || (r->ncustom > 0 && r->custom == NULL))
      return WHY("line %u: more than %u columns", r->line, STORE_ASSET_CUSTOM_MAX);
    for (size_t k = 0; k < r->ncustom; k++) {
      const char *nm = r->custom[k].name, *v = r->custom[k].value;
      if (nm == NULL || !nm[0] || !store_asset_text_ok(nm, STORE_ASSET_COLUMN_MAX, false))
        return WHY("line %u: a column name is not valid", r->line);
      for (int f = 0; f < STORE_AF__COUNT; f++)
        if (strcasecmp(nm, store_asset_columns[f]) == 0) return WHY("the column '%s' is given twice", nm);
      for (size_t j = 0; j < k; j++)
        if (strcasecmp(nm, r->custom[j].name) == 0) return WHY("the column '%s' is given twice", nm);
      if (!store_asset_text_ok(v, STORE_ASSET_CELL_MAX, true))
        return WHY("line %u: %s is not valid (UTF-8 text of at most 2048 bytes)", r->line, nm);
    }
    skip[i] = r->f[STORE_AF_TAG][0] == '\0';
    if (skip[i] && !row_empty(r)) return WHY("line %u: no %s", r->line, store_asset_columns[STORE_AF_TAG]);
    if (skip[i]) continue;
    const char *need = opt->match == STORE_MATCH_SERIAL ? store_asset_columns[STORE_AF_SERIAL]
                       : opt->match == STORE_MATCH_HOSTNAME ? store_asset_columns[STORE_AF_NAME]
                                                            : NULL;
    if (opt->match == STORE_MATCH_SERIAL && r->f[STORE_AF_SERIAL] == NULL)
      return WHY("--match serial needs a '%s' column", need);
    if (opt->match == STORE_MATCH_HOSTNAME && r->f[STORE_AF_NAME] == NULL)
      return WHY("--match hostname needs a '%s' column (the device's hostname)", need);
    if (opt->match == STORE_MATCH_MAC) {
      const char *m = row_custom(r, STORE_ASSET_MAC_COLUMN);
      char norm[18];
      if (m == NULL) return WHY("--match mac needs a '%s' column", STORE_ASSET_MAC_COLUMN);
      if (m[0] && !store_mac_norm(m, norm)) return WHY("line %u: '%.40s' is not a MAC address", r->line, m);
    }
  }
  /* One record per tag: the same tag twice (in any case) is two rows for one record. */
  size_t *idx = malloc((n ? n : 1) * sizeof *idx);
  if (idx == NULL) return TT_ENOMEM;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!skip[i]) idx[m++] = i;
  g_sort_rows = rows;
  qsort(idx, m, sizeof *idx, by_tag);
  int ret = 0;
  for (size_t i = 1; i < m && ret == 0; i++)
    if (strcasecmp(rows[idx[i - 1]].f[STORE_AF_TAG], rows[idx[i]].f[STORE_AF_TAG]) == 0)
      ret = WHY("lines %u and %u: asset tag '%.128s' given twice", rows[idx[i - 1]].line, rows[idx[i]].line,
                rows[idx[i]].f[STORE_AF_TAG]);
  free(idx);
  return ret;
}

/* The key a row is matched by, normalised as the facts are. */
static void row_key(const store_asset_import_t *opt, const store_asset_row_t *r, const rec_t *old, bool exists,
                    int *kind, char *key, size_t cap) {
  key[0] = '\0';
  *kind = (int)opt->match;
  switch (opt->match) {
  case STORE_MATCH_SERIAL:
    store_serial_key(r->f[STORE_AF_SERIAL], key, cap);
    break;
  case STORE_MATCH_HOSTNAME:
    store_key_norm(r->f[STORE_AF_NAME], key, cap);
    break;
  case STORE_MATCH_MAC: {
    char m[18];
    if (store_mac_norm(row_custom(r, STORE_ASSET_MAC_COLUMN), m)) snprintf(key, cap, "%s", m);
    break;
  }
  case STORE_MATCH_TAG:
    if (exists) {
      *kind = old->kind;
      snprintf(key, cap, "%s", old->key);
    }
    break;
  }
}

static json_t *jpair(const char *a, const char *b) { return json_pack("[ss]", a, b); }

typedef struct {
  json_t *changes, *unmatched, *row_conflicts, *device_conflicts, *no_record;
} report_t;

static void list_add(json_t *list, json_t *item) {
  if (json_array_size(list) < TT_ASSET_REPORT_ITEMS) json_array_append_new(list, item);
  else json_decref(item);
}

static int rec_write(broker_store_t *s, const store_asset_import_t *opt, const char *const *f, int kind, const char *key) {
  sqlite3_stmt *st = s->st[ST_ASSET_UPSERT];
  int rc = SQLITE_OK;
  for (int i = 0; i < STORE_AF__COUNT; i++) bind_text(st, i + 1, f[i], &rc);
  bind_i64(st, 13, kind, &rc);
  bind_text(st, 14, key, &rc);
  bind_i64(st, 15, opt->now_ms, &rc);
  bind_text(st, 16, opt->by, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "asset_upsert", rc);
}

static int custom_write(broker_store_t *s, const char *tag, const char *name, const char *value) {
  sqlite3_stmt *st = s->st[value[0] ? ST_ASSET_CUSTOM_SET : ST_ASSET_CUSTOM_DEL];
  int rc = SQLITE_OK;
  bind_text(st, 1, tag, &rc);
  bind_text(st, 2, name, &rc);
  if (value[0]) bind_text(st, 3, value, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "asset_custom_set", rc);
}

static const char *kv_find(const store_asset_kv_t *kv, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcasecmp(kv[i].name, name) == 0) return kv[i].value;
  return NULL;
}

/* One row: its record created or brought up to date, what changed, the devices its key finds. */
static int import_row(broker_store_t *s, const store_asset_import_t *opt, const store_asset_row_t *r, rec_t *old,
                      store_asset_counts_t *c, report_t *rep, pair_t *pairs, size_t *npairs, size_t row) {
  int ret = rec_get(s, r->f[STORE_AF_TAG], old);
  if (ret < 0) return ret;
  bool exists = ret == 1;
  ret = 0;
  const char *nf[STORE_AF__COUNT];
  for (int f = 0; f < STORE_AF__COUNT; f++) nf[f] = r->f[f] != NULL ? r->f[f] : exists ? old->f[f] : "";
  if (exists) nf[STORE_AF_TAG] = old->f[STORE_AF_TAG]; /* the tag keeps the spelling it was made with */
  int kind;
  char key[STORE_ASSET_CELL_MAX + 1];
  row_key(opt, r, old, exists, &kind, key, sizeof key);

  json_t *fields = json_object();
  for (int f = 1; f < STORE_AF__COUNT; f++) {
    const char *was = exists ? old->f[f] : "";
    if (strcmp(was, nf[f]) != 0) json_object_set_new(fields, store_asset_columns[f], jpair(was, nf[f]));
  }
  if (exists && (old->kind != kind || strcmp(old->key, key) != 0)) {
    char a[STORE_ASSET_CELL_MAX + 16], b[STORE_ASSET_CELL_MAX + 16];
    snprintf(a, sizeof a, "%s=%s", store_match_name((store_match_t)old->kind), old->key);
    snprintf(b, sizeof b, "%s=%s", store_match_name((store_match_t)kind), key);
    json_object_set_new(fields, "(match)", jpair(a, b));
  }
  for (size_t k = 0; k < r->ncustom; k++) {
    const char *was = exists ? kv_find(old->kv, old->ncustom, r->custom[k].name) : NULL;
    if (strcmp(was ? was : "", r->custom[k].value) != 0)
      json_object_set_new(fields, r->custom[k].name, jpair(was ? was : "", r->custom[k].value));
  }
  bool changed = !exists || json_object_size(fields) > 0 || (exists && old->kind != kind);
  if (!exists) c->created++;
  else if (changed) c->changed++;
  else c->unchanged++;
  if (changed) {
    ret = rec_write(s, opt, nf, kind, key);
    for (size_t k = 0; k < r->ncustom && ret == 0; k++) ret = custom_write(s, nf[STORE_AF_TAG], r->custom[k].name, r->custom[k].value);
  }
  char dev[CAND_MAX][STORE_NAME_MAX];
  size_t nd = 0;
  if (ret == 0) ret = candidates(s, kind, key, dev, &nd);
  if (ret != 0) {
    json_decref(fields);
    return ret;
  }
  if (nd == 1) {
    c->matched++;
    snprintf(pairs[*npairs].device, sizeof pairs[0].device, "%s", dev[0]);
    pairs[(*npairs)++].row = row;
  } else if (nd == 0) {
    c->unmatched++;
    char k[STORE_ASSET_CELL_MAX + 16];
    snprintf(k, sizeof k, "%s=%s", store_match_name((store_match_t)kind), key);
    list_add(rep->unmatched, json_pack("{s:i,s:s,s:s}", "line", (json_int_t)r->line, "tag", nf[STORE_AF_TAG], "key", k));
  } else {
    c->row_conflicts++;
    json_t *ds = json_array();
    for (size_t i = 0; i < nd && i < 2; i++) json_array_append_new(ds, json_string(dev[i]));
    if (nd > 2) json_array_append_new(ds, json_string("..."));
    list_add(rep->row_conflicts, json_pack("{s:i,s:s,s:o}", "line", (json_int_t)r->line, "tag", nf[STORE_AF_TAG], "devices", ds));
  }
  if (changed) {
    json_t *item = json_pack("{s:i,s:s,s:b,s:o}", "line", (json_int_t)r->line, "tag", nf[STORE_AF_TAG], "new",
                             !exists, "fields", fields);
    json_object_set_new(item, "device", nd == 1 ? json_string(dev[0]) : json_null());
    list_add(rep->changes, item);
  } else {
    json_decref(fields);
  }
  return 0;
}

/* After the rows: the devices two records are joined to, and the devices with none. */
static int import_devices(broker_store_t *s, rec_t *tmp, const pair_t *pairs, size_t npairs, store_asset_counts_t *c,
                          report_t *rep) {
  char tags[TAGS_PER_DEVICE][STORE_ASSET_TAG_MAX + 1];
  size_t nt;
  int ret = 0;
  for (size_t i = 0; i < npairs && ret == 0; i++) {
    if (i > 0 && strcmp(pairs[i].device, pairs[i - 1].device) == 0) continue;
    ret = joined_records(s, pairs[i].device, tmp, tags, TAGS_PER_DEVICE, &nt);
    if (ret == 0 && nt > 1) {
      c->device_conflicts++;
      json_t *ts = json_array();
      for (size_t k = 0; k < nt; k++) json_array_append_new(ts, json_string(tags[k]));
      list_add(rep->device_conflicts, json_pack("{s:s,s:o}", "device", pairs[i].device, "tags", ts));
    }
  }
  /* Every device, by id, a page at a time (the page statement is reset before the checks). */
  char after[STORE_NAME_MAX] = "";
  for (bool more = true; more && ret == 0;) {
    char page[256][STORE_NAME_MAX];
    size_t np = 0;
    sqlite3_stmt *st = s->st[ST_DEV_PAGE];
    int rc = SQLITE_OK;
    bind_text(st, 1, after, &rc);
    bind_i64(st, 2, 256, &rc);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
      rc = sqlite3_step(st);
      if (rc == SQLITE_ROW && np < 256) col_text(st, 0, page[np++], STORE_NAME_MAX);
    }
    done(st);
    if (rc != SQLITE_DONE) return sql_fail(s, "device_page", rc);
    more = np == 256;
    for (size_t i = 0; i < np && ret == 0; i++) {
      ret = joined_records(s, page[i], tmp, tags, 1, &nt);
      if (ret == 0 && nt == 0) {
        c->devices_without_record++;
        list_add(rep->no_record, json_string(page[i]));
      }
    }
    if (np) memcpy(after, page[np - 1], STORE_NAME_MAX);
  }
  return ret;
}

int store_asset_import(broker_store_t *s, const store_asset_import_t *opt, const store_asset_row_t *rows, size_t n,
                       store_asset_counts_t *counts, char **report, char *why, size_t whylen) {
  memset(counts, 0, sizeof *counts);
  *report = NULL;
  if (whylen) why[0] = '\0';
  if (opt == NULL || (unsigned)opt->match > STORE_MATCH_TAG || opt->now_ms < 0 || n > STORE_ASSET_ROWS_MAX ||
      (rows == NULL && n > 0) || (opt->by != NULL && strlen(opt->by) > TT_NAME_MAX))
    return TT_EINVAL;
  bool *skip = calloc(n ? n : 1, sizeof *skip);
  pair_t *pairs = calloc(n ? n : 1, sizeof *pairs);
  rec_t *old = malloc(sizeof *old);
  report_t rep = {json_array(), json_array(), json_array(), json_array(), json_array()};
  size_t npairs = 0;
  int ret = 0;
  if (!skip || !pairs || !old || !rep.changes || !rep.unmatched || !rep.row_conflicts || !rep.device_conflicts ||
      !rep.no_record) {
    ret = TT_ENOMEM;
    goto out;
  }
  counts->rows = n;
  if ((ret = rows_check(opt, rows, n, skip, why, whylen)) != 0) goto out;
  if ((ret = tx_begin(s)) != 0) goto out;
  for (size_t i = 0; i < n && ret == 0; i++) {
    if (skip[i]) {
      counts->skipped++;
      continue;
    }
    ret = import_row(s, opt, &rows[i], old, counts, &rep, pairs, &npairs, i);
  }
  if (ret == 0) {
    qsort(pairs, npairs, sizeof *pairs, by_device);
    ret = import_devices(s, old, pairs, npairs, counts, &rep);
  }
  if (ret == 0 && !opt->dry_run) ret = tx_commit(s);
  if (ret != 0 || opt->dry_run) tx_rollback(s);
  if (ret != 0) goto out;
  json_t *doc = json_pack(
      "{s:b,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:O,s:O,s:O,s:O,s:O}", "dry_run", opt->dry_run, "match",
      store_match_name(opt->match), "rows", (json_int_t)counts->rows, "skipped", (json_int_t)counts->skipped, "new",
      (json_int_t)counts->created, "changed", (json_int_t)counts->changed, "unchanged", (json_int_t)counts->unchanged,
      "matched", (json_int_t)counts->matched, "no_device", (json_int_t)counts->unmatched, "row_conflicts",
      (json_int_t)counts->row_conflicts, "device_conflicts", (json_int_t)counts->device_conflicts,
      "devices_without_record", (json_int_t)counts->devices_without_record, "changes", rep.changes, "unmatched",
      rep.unmatched, "conflicting_rows", rep.row_conflicts, "conflicting_devices", rep.device_conflicts,
      "without_record", rep.no_record);
  *report = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  if (*report == NULL) ret = TT_ENOMEM;
out:
  json_decref(rep.changes);
  json_decref(rep.unmatched);
  json_decref(rep.row_conflicts);
  json_decref(rep.device_conflicts);
  json_decref(rep.no_record);
  free(skip);
  free(pairs);
  free(old);
  return ret;
}

/* ---- export ------------------------------------------------------------------------------- */

int store_asset_custom_names(broker_store_t *s, char (*names)[STORE_ASSET_COLUMN_MAX + 1], size_t cap, size_t *n) {
  sqlite3_stmt *st = s->st[ST_ASSET_CUSTOM_NAMES];
  int rc, ret = 0;
  *n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (*n >= cap) {
      ret = TT_ETOOBIG;
      break;
    }
    col_text(st, 0, names[(*n)++], STORE_ASSET_COLUMN_MAX + 1);
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "asset_custom_names", rc);
  return ret;
}

static int export_records(broker_store_t *s, const char *after, uint32_t limit, store_asset_line_cb cb, void *ctx,
                          char *next, size_t nextcap, uint32_t *taken) {
  rec_t *r = malloc(sizeof *r);
  store_device_facts_t *dev = malloc(sizeof *dev);
  char last[STORE_ASSET_TAG_MAX + 1];
  snprintf(last, sizeof last, "%s", after);
  int ret = r && dev ? 0 : TT_ENOMEM;
  bool end = false;
  /* A record at a time: the page statement is reset before each line's other reads. */
  while (ret == 0 && !end && *taken < limit) {
    sqlite3_stmt *st = s->st[ST_ASSET_PAGE];
    int rc = SQLITE_OK;
    bool got = false;
    bind_text(st, 1, last, &rc);
    bind_i64(st, 2, 1, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      rec_from_row(st, r);
      got = true;
    } else if (rc != SQLITE_DONE) {
      ret = sql_fail(s, "asset_page", rc);
    }
    done(st);
    if (ret != 0) break;
    if (!got) {
      end = true;
      break;
    }
    if (strcasecmp(r->f[STORE_AF_TAG], last) <= 0 && last[0]) { /* the walk must move on */
      ret = TT_EIO;
      break;
    }
    if ((ret = rec_custom(s, r)) != 0) break;
    char d[STORE_NAME_MAX];
    int j = joined_device(s, r->kind, r->key, d);
    if (j < 0) {
      ret = j;
      break;
    }
    if (j == 1 && (ret = store_device_facts(s, d, dev)) == TT_ENOTFOUND) {
      j = 0;
      ret = 0;
    }
    if (ret != 0) break;
    store_asset_line_t l;
    memset(&l, 0, sizeof l);
    for (int f = 0; f < STORE_AF__COUNT; f++) l.f[f] = r->f[f];
    l.custom = r->kv;
    l.ncustom = r->ncustom;
    l.dev = j == 1 ? dev : NULL;
    if (cb(ctx, &l) != 0) break;
    snprintf(last, sizeof last, "%.128s", r->f[STORE_AF_TAG]); /* tags are <= 128 bytes (schema CHECK) */
    (*taken)++;
  }
  if (ret == 0) {
    if (end) next[0] = '\0';
    else snprintf(next, nextcap, "r%s", last);
  }
  free(r);
  free(dev);
  return ret;
}

static int export_devices(broker_store_t *s, const char *after, uint32_t limit, store_asset_line_cb cb, void *ctx,
                          char *next, size_t nextcap, uint32_t *taken) {
  rec_t *tmp = malloc(sizeof *tmp);
  store_device_facts_t *dev = malloc(sizeof *dev);
  char last[STORE_NAME_MAX];
  snprintf(last, sizeof last, "%s", after);
  int ret = tmp && dev ? 0 : TT_ENOMEM;
  bool end = false;
  uint32_t scanned = 0;
  while (ret == 0 && !end && *taken < limit && scanned < EXPORT_SCAN_MAX) {
    char page[64][STORE_NAME_MAX];
    size_t np = 0;
    sqlite3_stmt *st = s->st[ST_DEV_PAGE];
    int rc = SQLITE_OK;
    bind_text(st, 1, last, &rc);
    bind_i64(st, 2, 64, &rc);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
      rc = sqlite3_step(st);
      if (rc == SQLITE_ROW && np < 64) col_text(st, 0, page[np++], STORE_NAME_MAX);
    }
    done(st);
    if (rc != SQLITE_DONE) {
      ret = sql_fail(s, "device_page", rc);
      break;
    }
    if (np == 0) end = true;
    bool stop = false;
    for (size_t i = 0; i < np && ret == 0 && !stop; i++) {
      char tags[1][STORE_ASSET_TAG_MAX + 1];
      size_t nt = 0;
      scanned++;
      ret = joined_records(s, page[i], tmp, tags, 1, &nt);
      if (ret == 0 && nt == 0) {
        ret = store_device_facts(s, page[i], dev);
        if (ret == TT_ENOTFOUND) ret = 0; /* gone since the page was read */
        else if (ret == 0) {
          store_asset_line_t l;
          memset(&l, 0, sizeof l);
          l.dev = dev;
          if (cb(ctx, &l) != 0) {
            stop = true;
            break;
          }
          (*taken)++;
        }
      }
      memcpy(last, page[i], STORE_NAME_MAX);
      if (*taken >= limit || scanned >= EXPORT_SCAN_MAX) break;
    }
    if (stop) {
      /* resume at the device not taken: the cursor is the one before it */
      break;
    }
  }
  if (ret == 0) {
    if (end) next[0] = '\0';
    else snprintf(next, nextcap, "d%s", last);
  }
  free(tmp);
  free(dev);
  return ret;
}

int store_asset_export(broker_store_t *s, const char *after, uint32_t limit, store_asset_line_cb cb, void *ctx,
                       char *next, size_t nextcap) {
  if (after == NULL || next == NULL || nextcap < STORE_ASSET_CURSOR_MAX || limit == 0) return TT_EINVAL;
  size_t n = strnlen(after, STORE_ASSET_CURSOR_MAX);
  if (n >= STORE_ASSET_CURSOR_MAX || (n > 0 && after[0] != 'r' && after[0] != 'd')) return TT_EINVAL;
  char cur[STORE_ASSET_CURSOR_MAX]; /* after and next may be one buffer */
  memcpy(cur, after, n + 1);
  after = cur;
  next[0] = '\0';
  if (after[0] == 'r' && (n - 1 > STORE_ASSET_TAG_MAX || !store_asset_text_ok(after + 1, STORE_ASSET_TAG_MAX, false)))
    return TT_EINVAL;
  if (after[0] == 'd' && (n - 1 > TT_NAME_MAX || !store_asset_text_ok(after + 1, TT_NAME_MAX, false))) return TT_EINVAL;
  uint32_t taken = 0;
  int ret = 0;
  if (after[0] != 'd') {
    ret = export_records(s, n ? after + 1 : "", limit, cb, ctx, next, nextcap, &taken);
    if (ret != 0 || next[0] || taken >= limit) {
      if (ret == 0 && !next[0]) snprintf(next, nextcap, "d"); /* the records are done: devices next */
      return ret;
    }
    return export_devices(s, "", limit, cb, ctx, next, nextcap, &taken);
  }
  return export_devices(s, after + 1, limit, cb, ctx, next, nextcap, &taken);
}

/* ---- devices --where ------------------------------------------------------------------------ */

/* The query is put together from the fixed fragments below, the column names from k_col (never
 * from the request); every value is a bound parameter. It is prepared per listing, since the
 * conditions decide which indexes serve it. */
static int where_sql(const store_asset_cond_t *c, size_t n, char *sql, size_t cap) {
  static const char *const branch[] = {
      "SELECT d.id AS device, r.tag AS tag FROM asset_records r JOIN devices d ON lower(d.hostname) = r.match_value"
      " WHERE r.match_kind = 1",
      "SELECT f.device AS device, r.tag AS tag FROM asset_records r JOIN inv_facts f ON f.serial_key = r.match_value"
      " WHERE r.match_kind = 0",
      "SELECT m.device AS device, r.tag AS tag FROM asset_records r JOIN inv_macs m ON m.mac = r.match_value"
      " WHERE r.match_kind = 2",
  };
  size_t off = 0;
#define PUT(...)                                                   \
  do {                                                             \
    int k_ = snprintf(sql + off, cap - off, __VA_ARGS__);          \
    if (k_ < 0 || (size_t)k_ >= cap - off) return TT_ETOOBIG;      \
    off += (size_t)k_;                                             \
  } while (0)
  PUT("SELECT device, tag FROM (");
  for (size_t b = 0; b < 3; b++) {
    PUT("%s%s AND r.match_value <> ''", b ? " UNION ALL " : "", branch[b]);
    for (size_t i = 0; i < n; i++) {
      if (c[i].field >= 0) PUT(" AND r.%s = ?%zu", k_col[c[i].field], 2 * i + 2);
      else PUT(" AND EXISTS(SELECT 1 FROM asset_custom c WHERE c.tag = r.tag AND c.name = ?%zu AND c.value = ?%zu)",
               2 * i + 2, 2 * i + 3);
    }
  }
  PUT(") WHERE device > ?1 ORDER BY device, tag");
#undef PUT
  return 0;
}

int store_device_page_where(broker_store_t *s, const char *after, uint32_t limit, const store_asset_cond_t *c,
                            size_t n, store_device_cb cb, void *ctx) {
  if (after == NULL || n == 0 || n > TT_ASSET_WHERE_MAX || c == NULL) return TT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (c[i].field >= STORE_AF__COUNT || c[i].value == NULL || (c[i].field < 0 && c[i].custom == NULL)) return TT_EINVAL;
  char sql[4096 + TT_ASSET_WHERE_MAX * 512];
  int ret = where_sql(c, n, sql, sizeof sql);
  if (ret != 0) return ret;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return sql_fail(s, "device_where_prepare", rc);
  bind_text(st, 1, after, &rc);
  for (size_t i = 0; i < n; i++) {
    if (c[i].field >= 0) {
      bind_text(st, (int)(2 * i + 2), c[i].value, &rc);
    } else {
      bind_text(st, (int)(2 * i + 2), c[i].custom, &rc);
      bind_text(st, (int)(2 * i + 3), c[i].value, &rc);
    }
  }
  /* Pairs come by device: a device is listed when one of its pairs' records is joined to it
   * (its key finds that device and no other). */
  rec_t *tmp = malloc(sizeof *tmp);
  if (tmp == NULL) ret = TT_ENOMEM;
  char cur[STORE_NAME_MAX] = "";
  bool listed = false;
  uint32_t count = 0;
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW) && (limit == 0 || count < limit)) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    char dev[STORE_NAME_MAX], tag[STORE_ASSET_TAG_MAX + 1];
    col_text(st, 0, dev, sizeof dev);
    col_text(st, 1, tag, sizeof tag);
    if (strcmp(dev, cur) != 0) {
      snprintf(cur, sizeof cur, "%s", dev);
      listed = false;
    }
    if (listed) continue;
    int found = rec_get(s, tag, tmp);
    if (found < 0) {
      ret = found;
      break;
    }
    char joined[STORE_NAME_MAX];
    int j = found ? joined_device(s, tmp->kind, tmp->key, joined) : 0;
    if (j < 0) {
      ret = j;
      break;
    }
    if (j == 0 || strcmp(joined, dev) != 0) continue;
    listed = true;
    store_device_t d;
    int g = store_device_get(s, dev, &d);
    if (g == TT_ENOTFOUND) continue;
    if (g != 0) {
      ret = g;
      break;
    }
    count++;
    if ((ret = cb(ctx, &d)) != 0) break;
  }
  if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW && rc != SQLITE_OK) ret = sql_fail(s, "device_where", rc);
  sqlite3_finalize(st);
  free(tmp);
  return ret < 0 ? ret : 0;
}
