/* tether inventory find TABLE COL=VALUE|COL~SUBSTR... [--json]: every device whose latest
 * inventory has a row of TABLE matching all the conditions (= exact, ~ contains), fetched a
 * page at a time. Readable: one aligned line per matching row, DEVICE and HOSTNAME first.
 * --json: one object per device and line, {"device","hostname","rows":[{col:value},...]}. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "inv/report.h"
#include "tt/msg.h"

#define CELL_SHOWN 40      /* characters of one cell in the readable table */
#define COLS_SHOWN 32      /* columns of the readable table past DEVICE and HOSTNAME */

typedef struct {
  Tether__InventoryCondition cond[TT_INV_FIND_CONDS_MAX];
  Tether__InventoryCondition *condp[TT_INV_FIND_CONDS_MAX];
  size_t ncond;
  uint64_t after_device, after_row;
  /* --json: the device being printed, held until the next page says it is complete */
  json_t *pending;
  /* readable: every line, printed aligned at the end */
  json_t *lines; /* [[device, hostname, row], ...] */
  size_t devices;
} find_state_t;

static find_state_t g_fs;

static bool name_ok(const char *s, size_t n) {
  if (n < 1 || n > TT_INV_TABLE_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return false;
  return true;
}

static int check(console_t *c) {
  if (!name_ok(c->arg[0], strlen(c->arg[0])))
    return console_usage_error("'%s' is not a table name (deb_packages, mounts, ...)", c->arg[0]);
  if (c->narg - 1 > (int)TT_INV_FIND_CONDS_MAX)
    return console_usage_error("at most %u conditions", TT_INV_FIND_CONDS_MAX);
  memset(&g_fs, 0, sizeof g_fs);
  for (int i = 1; i < c->narg; i++) {
    const char *a = c->arg[i];
    size_t col = strcspn(a, "=~");
    if (a[col] == '\0' || !name_ok(a, col))
      return console_usage_error("'%s' is not COLUMN=VALUE or COLUMN~TEXT (a column like name, version)", a);
    const char *v = a + col + 1;
    if (!tt_text_valid(tt_text(v), TT_INV_FIND_VALUE_MAX))
      return console_usage_error("the value of '%.*s' is not text of at most %u bytes", (int)col, a,
                                 TT_INV_FIND_VALUE_MAX);
    Tether__InventoryCondition *k = &g_fs.cond[g_fs.ncond];
    tether__inventory_condition__init(k);
    k->column.data = (uint8_t *)a;
    k->column.len = col;
    k->value = tt_text(v);
    k->contains = a[col] == '~';
    g_fs.condp[g_fs.ncond++] = k;
  }
  return 0;
}

static int get(console_t *c) {
  Tether__InventoryFindRequest f = TETHER__INVENTORY_FIND_REQUEST__INIT;
  f.table = tt_text(c->arg[0]);
  f.n_where = g_fs.ncond;
  f.where = g_fs.condp;
  f.after_device = g_fs.after_device;
  f.after_row = g_fs.after_row;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_INVENTORY_FIND;
  q.inventory_find = &f;
  return console_request(c, &q, TETHER__RESPONSE__BODY_INVENTORY_FIND);
}

static int start(console_t *c) {
  if (!c->json && !(g_fs.lines = json_array())) return TT_ENOMEM;
  return get(c);
}

/* Bytes from the broker as a JSON string (invalid UTF-8 refused: the broker's are valid). */
static json_t *str_of(ProtobufCBinaryData b) {
  return json_stringn(b.len ? (const char *)b.data : "", b.len);
}

static void flush_pending(void) {
  if (!g_fs.pending) return;
  (void)console_report_json(stdout, g_fs.pending);
  json_decref(g_fs.pending);
  g_fs.pending = NULL;
}

/* Cells for a terminal: what console_text makes safe, cut to CELL_SHOWN characters. */
static void cell(char *out, size_t cap, const char *s) {
  ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
  console_text(out, cap, b);
  console_cut(out, CELL_SHOWN);
}

static void print_lines(void) {
  /* Columns: every row's, in the order first seen. */
  const char *cols[COLS_SHOWN];
  size_t ncols = 0, w[COLS_SHOWN + 2] = {6, 8}, i, k;
  json_t *ln;
  char buf[CELL_SHOWN * 4 + 8];
  json_array_foreach(g_fs.lines, i, ln) {
    const char *key;
    json_t *v;
    for (k = 0; k < 2; k++) {
      cell(buf, sizeof buf, json_string_value(json_array_get(ln, k)));
      if (strlen(buf) > w[k]) w[k] = strlen(buf);
    }
    json_object_foreach(json_array_get(ln, 2), key, v) {
      for (k = 0; k < ncols && strcmp(cols[k], key) != 0; k++) {
      }
      if (k == ncols) {
        if (ncols == COLS_SHOWN) continue;
        cols[ncols] = key;
        w[2 + ncols] = strlen(key);
        ncols++;
      }
      cell(buf, sizeof buf, json_string_value(v) ? json_string_value(v) : "");
      if (strlen(buf) > w[2 + k]) w[2 + k] = strlen(buf);
    }
  }
  printf("%-*s  %-*s", (int)w[0], "DEVICE", (int)w[1], "HOSTNAME");
  for (k = 0; k < ncols; k++) {
    cell(buf, sizeof buf, cols[k]);
    printf("  %-*s", k + 1 < ncols ? (int)w[2 + k] : 0, buf);
  }
  putchar('\n');
  json_array_foreach(g_fs.lines, i, ln) {
    for (k = 0; k < 2; k++) {
      cell(buf, sizeof buf, json_string_value(json_array_get(ln, k)));
      printf(k ? "  %-*s" : "%-*s", (int)w[k], buf);
    }
    for (k = 0; k < ncols; k++) {
      const char *v = json_string_value(json_object_get(json_array_get(ln, 2), cols[k]));
      cell(buf, sizeof buf, v ? v : "");
      printf("  %-*s", k + 1 < ncols ? (int)w[2 + k] : 0, buf);
    }
    putchar('\n');
  }
  printf("%zu device%s, %zu row%s\n", g_fs.devices, g_fs.devices == 1 ? "" : "s", json_array_size(g_fs.lines),
         json_array_size(g_fs.lines) == 1 ? "" : "s");
}

static void finish(console_t *c, int code) {
  json_decref(g_fs.pending);
  json_decref(g_fs.lines);
  memset(&g_fs, 0, sizeof g_fs);
  fflush(stdout);
  console_finish(c, code);
}

static int response(console_t *c, const Tether__Response *r) {
  const Tether__InventoryFindPage *p = r->inventory_find;
  if (!p) return TT_EPROTO;
  json_t **rows = calloc(p->n_rows ? p->n_rows : 1, sizeof *rows);
  if (!rows) return TT_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < p->n_rows && rc == 0; i++) {
    rows[i] = json_loadb((const char *)p->rows[i].data, p->rows[i].len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(rows[i])) rc = TT_EPROTO;
  }
  for (size_t i = 0; i < p->n_devices && rc == 0; i++) {
    const Tether__InventoryFindDevice *d = p->devices[i];
    json_t *dev = d ? str_of(d->device) : NULL, *host = d ? str_of(d->hostname) : NULL;
    if (!dev || !host) {
      json_decref(dev);
      json_decref(host);
      rc = TT_EPROTO;
      break;
    }
    /* A device the last page cut goes on here: the same device, first on this page. */
    const char *prev = g_fs.pending ? json_string_value(json_object_get(g_fs.pending, "device")) : NULL;
    bool same = c->json ? prev && i == 0 && strcmp(prev, json_string_value(dev)) == 0 : false;
    if (!c->json) {
      size_t n = json_array_size(g_fs.lines);
      json_t *last = n ? json_array_get(g_fs.lines, n - 1) : NULL;
      same = i == 0 && last && strcmp(json_string_value(json_array_get(last, 0)), json_string_value(dev)) == 0;
    }
    if (!same) g_fs.devices++;
    if (c->json && !same) {
      flush_pending();
      g_fs.pending = json_object();
      json_object_set(g_fs.pending, "device", dev);
      json_object_set(g_fs.pending, "hostname", host);
      json_object_set_new(g_fs.pending, "rows", json_array());
    }
    for (size_t k = 0; k < d->n_rows && rc == 0; k++) {
      if (d->rows[k] >= p->n_rows) {
        rc = TT_EPROTO;
        break;
      }
      json_t *row = rows[d->rows[k]];
      if (c->json) json_array_append(json_object_get(g_fs.pending, "rows"), row);
      else json_array_append_new(g_fs.lines, json_pack("[OOO]", dev, host, row));
    }
    json_decref(dev);
    json_decref(host);
  }
  for (size_t i = 0; i < p->n_rows; i++) json_decref(rows[i]);
  free(rows);
  if (rc) return rc;
  if (p->more) {
    /* The cursor must move, or a broken broker would page forever. */
    if (p->after_device < g_fs.after_device ||
        (p->after_device == g_fs.after_device && p->after_row <= g_fs.after_row))
      return TT_EPROTO;
    g_fs.after_device = p->after_device;
    g_fs.after_row = p->after_row;
    return get(c);
  }
  if (c->json) flush_pending();
  else if (g_fs.devices == 0) printf("no device has a %s row like that\n", c->arg[0]);
  else print_lines();
  finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_inventory_find = {
    .name = "inventory",
    .sub = "find",
    .args = "TABLE COLUMN=VALUE|COLUMN~TEXT... [--json]",
    .help = "every device whose latest inventory has a TABLE row matching all the conditions "
            "(= exact, ~ contains); --json: one object per device and line",
    .min_pos = 2,
    .max_pos = 1 + (int)TT_INV_FIND_CONDS_MAX,
    .switches = CONSOLE_SW_JSON,
    .check = check,
    .start = start,
    .on_response = response,
};
