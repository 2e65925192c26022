/* tether devices [--online] [--json]: every enrolled device and its state.
 * tether device show ID [--json]: everything the broker knows about one device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "tt/msg.h"

/* A broker that keeps claiming more pages cannot make the console grow without end. */
#define DEVICES_ROWS_MAX (1u << 24)
/* Room for a field of untrusted text once console_text has escaped it (\xNN per byte). */
#define NAME_SHOWN (TT_NAME_MAX * 4 + 1)
#define TEXT_SHOWN (TT_TEXT_MAX * 4 + 1)

typedef struct {
  ProtobufCBinaryData id, host, addr, ver;
  uint64_t since_ms, last_ms, enrolled_ms, not_after_ms;
  bool online, revoked;
} dev_row_t;

/* The listing is collected first and printed whole, sorted, so a failure on a later page
 * never leaves half a table or unbalanced JSON on stdout. */
typedef struct {
  char after[TT_NAME_MAX + 1]; /* the last id of the page before (keyset paging) */
  dev_row_t *rows;
  size_t n, cap;
} devices_state_t;

static devices_state_t g_dev;

static void devices_discard(void) {
  for (size_t i = 0; i < g_dev.n; i++) {
    free(g_dev.rows[i].id.data);
    free(g_dev.rows[i].host.data);
    free(g_dev.rows[i].addr.data);
    free(g_dev.rows[i].ver.data);
  }
  free(g_dev.rows);
  memset(&g_dev, 0, sizeof(g_dev));
}

static int copy_bytes(ProtobufCBinaryData *dst, ProtobufCBinaryData src) {
  dst->len = 0;
  dst->data = malloc(src.len ? src.len : 1);
  if (!dst->data) return TT_ENOMEM;
  if (src.len) memcpy(dst->data, src.data, src.len);
  dst->len = src.len;
  return 0;
}

static void row_from_info(dev_row_t *r, const Tether__DeviceInfo *d) {
  r->since_ms = d->connected_since_ms;
  r->last_ms = d->last_seen_ms;
  r->enrolled_ms = d->enrolled_ms;
  r->not_after_ms = d->cert_not_after_ms;
  /* A broker from before `online` existed listed only live devices, each with a start. */
  r->online = d->online || d->connected_since_ms != 0;
  r->revoked = d->revoked;
  r->id = d->device_id;
  r->host = d->hostname;
  r->addr = d->address;
  r->ver = d->agent_version;
}

static int row_add(const Tether__DeviceInfo *d) {
  if (g_dev.n >= DEVICES_ROWS_MAX) return TT_ETOOBIG;
  if (g_dev.n == g_dev.cap) {
    size_t cap = g_dev.cap ? g_dev.cap * 2 : 64;
    dev_row_t *rows = realloc(g_dev.rows, cap * sizeof(*rows));
    if (!rows) return TT_ENOMEM;
    g_dev.rows = rows;
    g_dev.cap = cap;
  }
  dev_row_t view, *r = &g_dev.rows[g_dev.n];
  row_from_info(&view, d);
  *r = view;
  memset(&r->id, 0, sizeof(r->id));
  memset(&r->host, 0, sizeof(r->host));
  memset(&r->addr, 0, sizeof(r->addr));
  memset(&r->ver, 0, sizeof(r->ver));
  g_dev.n++; /* counted now, so devices_discard frees whatever was copied */
  int rc = copy_bytes(&r->id, view.id);
  if (!rc) rc = copy_bytes(&r->host, view.host);
  if (!rc) rc = copy_bytes(&r->addr, view.addr);
  if (!rc) rc = copy_bytes(&r->ver, view.ver);
  return rc;
}

static int cmp_bytes(ProtobufCBinaryData a, ProtobufCBinaryData b) {
  size_t n = a.len < b.len ? a.len : b.len;
  int c = n ? memcmp(a.data, b.data, n) : 0;
  return c ? c : (a.len > b.len) - (a.len < b.len);
}

static int cmp_rows(const void *a, const void *b) {
  return cmp_bytes(((const dev_row_t *)a)->id, ((const dev_row_t *)b)->id);
}

static const char *status_of(const dev_row_t *r) {
  return r->revoked ? "revoked" : r->online ? "online" : "offline";
}

static void row_json(FILE *o, const dev_row_t *r) {
  fputs("{\"device\":", o);
  console_json_bytes(o, r->id);
  fputs(",\"hostname\":", o);
  console_json_bytes(o, r->host);
  fprintf(o, ",\"online\":%s,\"revoked\":%s,\"last_seen\":", r->online ? "true" : "false",
          r->revoked ? "true" : "false");
  console_json_time(o, r->last_ms);
  fputs(",\"connected_since\":", o);
  console_json_time(o, r->online ? r->since_ms : 0);
  fputs(",\"enrolled\":", o);
  console_json_time(o, r->enrolled_ms);
  fputs(",\"cert_not_after\":", o);
  console_json_time(o, r->not_after_ms);
  fputs(",\"address\":", o);
  console_json_bytes(o, r->addr);
  fputs(",\"version\":", o);
  console_json_bytes(o, r->ver);
  fputc('}', o);
}

static void shown(char *dst, size_t cap, ProtobufCBinaryData t) {
  console_text(dst, cap, t);
  if (!dst[0]) snprintf(dst, cap, "-");
}

static void devices_print(console_t *c) {
  if (g_dev.n > 1) qsort(g_dev.rows, g_dev.n, sizeof(*g_dev.rows), cmp_rows);
  uint64_t now = console_now_ms();
  size_t printed = 0;
  if (c->json) fputc('[', stdout);
  else printf("%-24s %-24s %-8s %-10s %-22s %s\n", "DEVICE", "HOSTNAME", "STATUS", "LAST SEEN", "ADDRESS",
              "VERSION");
  for (size_t i = 0; i < g_dev.n; i++) {
    const dev_row_t *r = &g_dev.rows[i];
    /* Pages taken while devices enroll may overlap by one: list each device once. */
    if (i > 0 && cmp_rows(r, r - 1) == 0) continue;
    if (c->online && !r->online) continue;
    if (c->json) {
      if (printed) fputc(',', stdout);
      row_json(stdout, r);
    } else {
      char id[NAME_SHOWN], host[TEXT_SHOWN], addr[TEXT_SHOWN], ver[TEXT_SHOWN], seen[32];
      shown(id, sizeof(id), r->id);
      shown(host, sizeof(host), r->host);
      shown(addr, sizeof(addr), r->addr);
      shown(ver, sizeof(ver), r->ver);
      if (r->online) snprintf(seen, sizeof(seen), "now");
      else if (!r->last_ms) snprintf(seen, sizeof(seen), "never");
      else console_ago(seen, sizeof(seen), r->last_ms, now);
      printf("%-24s %-24s %-8s %-10s %-22s %s\n", id, host, status_of(r), seen, addr, ver);
    }
    printed++;
  }
  if (c->json) fputs("]\n", stdout);
  else if (printed == 0)
    fprintf(stderr, c->nwhere ? "(no devices match)\n" : c->online ? "(no devices online)\n" : "(no devices enrolled)\n");
  fflush(stdout);
}

static int request_page(console_t *c) {
  Tether__DeviceListRequest q = TETHER__DEVICE_LIST_REQUEST__INIT;
  q.after = tt_text(g_dev.after);
  q.limit = TT_DEVICE_PAGE_MAX;
  ProtobufCBinaryData where[TT_ASSET_WHERE_MAX];
  for (int i = 0; i < c->nwhere; i++) where[i] = tt_text(c->where[i]);
  q.where = where;
  q.n_where = (size_t)c->nwhere;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_DEVICES;
  r.devices = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_DEVICES);
}

static int where_check(console_t *c) {
  for (int i = 0; i < c->nwhere; i++) {
    const char *eq = strchr(c->where[i], '=');
    if (!eq || eq == c->where[i]) return console_usage_error("--where: field=value, not '%s'", c->where[i]);
  }
  return 0;
}

static int devices_start(console_t *c) {
  c->state = &g_dev;
  atexit(devices_discard);
  return request_page(c);
}

static int devices_response(console_t *c, const Tether__Response *r) {
  const Tether__DeviceList *l = r->devices;
  if (!l) return TT_EPROTO;
  if (l->n_devices > TT_DEVICE_PAGE_MAX) return TT_EPROTO;
  for (size_t i = 0; i < l->n_devices; i++) {
    int rc = row_add(l->devices[i]);
    if (rc) return rc;
  }
  if (l->more) {
    /* Ids only grow from page to page; a page that does not move on would repeat forever. */
    const ProtobufCBinaryData *last = l->n_devices ? &l->devices[l->n_devices - 1]->device_id : NULL;
    if (!last || last->len == 0 || last->len > TT_NAME_MAX ||
        (strlen(g_dev.after) == last->len && memcmp(g_dev.after, last->data, last->len) == 0))
      return TT_EPROTO;
    memcpy(g_dev.after, last->data, last->len);
    g_dev.after[last->len] = '\0';
    return request_page(c);
  }
  devices_print(c);
  devices_discard();
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_devices = {
    .name = "devices",
    .args = "[--online] [--where F=V ...] [--json]",
    .help = "every enrolled device: status, last seen, address, version (--where: by asset record)",
    .min_pos = 0,
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_ONLINE,
    .check = where_check,
    .start = devices_start,
    .on_response = devices_response,
};

/* -- device show ------------------------------------------------------------------------ */

static int show_check(console_t *c) {
  if (!tt_text_valid(tt_text(c->arg[0]), TT_NAME_MAX) || !c->arg[0][0])
    return console_usage_error("not a device id (up to %u printable bytes)", TT_NAME_MAX);
  return 0;
}

static int show_start(console_t *c) {
  Tether__DeviceShowRequest q = TETHER__DEVICE_SHOW_REQUEST__INIT;
  q.device_id = tt_text(c->arg[0]);
  q.resolve = true; /* an id, or a hostname naming one device */
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_DEVICE_SHOW;
  r.device_show = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_DEVICE);
}

static void show_time(const char *label, uint64_t ms, uint64_t now, bool future) {
  char when[40], ago[32];
  if (!ms) {
    printf("%s: unknown\n", label);
    return;
  }
  console_iso(when, sizeof(when), ms, false);
  if (future && ms <= now) printf("%s: %s (expired)\n", label, when);
  else if (future) printf("%s: %s\n", label, when);
  else {
    console_ago(ago, sizeof(ago), ms, now);
    printf("%s: %s (%s)\n", label, when, ago);
  }
}

static int show_response(console_t *c, const Tether__Response *r) {
  if (!r->device) return TT_EPROTO;
  dev_row_t d;
  row_from_info(&d, r->device);
  if (c->json) {
    row_json(stdout, &d);
    fputc('\n', stdout);
  } else {
    char id[NAME_SHOWN], text[TEXT_SHOWN], when[40];
    uint64_t now = console_now_ms();
    shown(id, sizeof(id), d.id);
    printf("device: %s\n", id);
    shown(text, sizeof(text), d.host);
    printf("hostname: %s\n", text);
    if (d.revoked) printf("status: revoked\n");
    else if (d.online && d.since_ms) {
      console_iso(when, sizeof(when), d.since_ms, false);
      printf("status: online since %s\n", when);
    } else printf("status: %s\n", d.online ? "online" : "offline");
    if (d.online) printf("last seen: now\n");
    else if (!d.last_ms) printf("last seen: never\n");
    else show_time("last seen", d.last_ms, now, false);
    shown(text, sizeof(text), d.addr);
    printf("address: %s\n", text);
    shown(text, sizeof(text), d.ver);
    printf("version: %s\n", text);
    show_time("enrolled", d.enrolled_ms, now, false);
    show_time("certificate expires", d.not_after_ms, now, true);
    printf("revoked: %s\n", d.revoked ? "yes" : "no");
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

static void show_not_found(console_t *c) {
  console_fail(c, "no device has the id or hostname %s", c->arg[0]); /* checked printable in show_check */
}

const console_cmd_t console_cmd_device_show = {
    .name = "device",
    .sub = "show",
    .args = "ID [--json]",
    .help = "everything known about one device",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = show_check,
    .start = show_start,
    .on_response = show_response,
    .on_not_found = show_not_found,
};
