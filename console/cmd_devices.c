/* tether devices [--json]: the agents connected to the broker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "console.h"
#include "tt/log.h"
#include "tt/msg.h"

/* The listing is collected first and printed whole, so a failure on a later page never
 * leaves half a table or unbalanced JSON on stdout. */
typedef struct {
  uint32_t offset;
  uint32_t printed;
  char *text;
  size_t text_len;
  FILE *out;
} devices_state_t;

static devices_state_t g_state;

static int request_page(console_t *c) {
  Tether__DeviceListRequest q = TETHER__DEVICE_LIST_REQUEST__INIT;
  q.offset = g_state.offset;
  q.limit = TT_DEVICE_PAGE_MAX;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.id = g_state.offset + 1;
  r.body_case = TETHER__REQUEST__BODY_DEVICES;
  r.devices = &q;
  return tt_link_send(c->link, TT_K_REQUEST, &r.base);
}

static void devices_discard(void) {
  if (g_state.out) fclose(g_state.out);
  g_state.out = NULL;
  free(g_state.text);
  g_state.text = NULL;
}

static int devices_start(console_t *c) {
  c->state = &g_state;
  g_state.out = open_memstream(&g_state.text, &g_state.text_len);
  if (!g_state.out) return TT_ENOMEM;
  atexit(devices_discard);
  return request_page(c);
}

static void fmt_time(uint64_t unix_ms, char *out, size_t cap, int iso) {
  time_t t = (time_t)(unix_ms / 1000u);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, cap, iso ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%SZ", &tm);
}

static int devices_response(console_t *c, const Tether__Response *r) {
  if (r->error) {
    char msg[TT_TEXT_MAX + 1];
    if (tt_text_copy(msg, sizeof(msg), r->error->message)) snprintf(msg, sizeof(msg), "(unprintable)");
    console_fail(c, "broker refused: %s", msg);
    return 0;
  }
  if (r->body_case != TETHER__RESPONSE__BODY_DEVICES) return TT_EPROTO;
  const Tether__DeviceList *l = r->devices;
  if (g_state.offset == 0) {
    if (c->json) fputc('[', g_state.out);
    else fprintf(g_state.out, "%-24s %-24s %-22s %-21s %s\n", "DEVICE", "HOSTNAME", "ADDRESS", "CONNECTED SINCE", "VERSION");
  }
  for (size_t i = 0; i < l->n_devices; i++) {
    const Tether__DeviceInfo *d = l->devices[i];
    char id[TT_NAME_MAX + 1], host[TT_TEXT_MAX + 1], addr[TT_TEXT_MAX + 1], ver[TT_TEXT_MAX + 1], when[40];
    if (tt_text_copy(id, sizeof(id), d->device_id) || tt_text_copy(host, sizeof(host), d->hostname) ||
        tt_text_copy(addr, sizeof(addr), d->address) || tt_text_copy(ver, sizeof(ver), d->agent_version))
      return TT_ETEXT;
    if (c->json) {
      fmt_time(d->connected_since_ms, when, sizeof(when), 1);
      FILE *o = g_state.out;
      fprintf(o, "%s{\"device\":", g_state.printed ? "," : "");
      console_json_str(o, id);
      fprintf(o, ",\"hostname\":");
      console_json_str(o, host);
      fprintf(o, ",\"address\":");
      console_json_str(o, addr);
      fprintf(o, ",\"connected_since\":\"%s\",\"version\":", when);
      console_json_str(o, ver);
      fprintf(o, ",\"online\":true}");
    } else {
      fmt_time(d->connected_since_ms, when, sizeof(when), 0);
      fprintf(g_state.out, "%-24s %-24s %-22s %-21s %s\n", id, host, addr, when, ver);
    }
    g_state.printed++;
  }
  g_state.offset += (uint32_t)l->n_devices;
  if (l->n_devices > 0 && g_state.offset < l->total) return request_page(c);
  if (c->json) fputs("]\n", g_state.out);
  fclose(g_state.out);
  g_state.out = NULL;
  fwrite(g_state.text, 1, g_state.text_len, stdout);
  if (!c->json && g_state.printed == 0) fprintf(stderr, "(no devices connected)\n");
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_devices = {
    .name = "devices",
    .args = "[--json]",
    .help = "list connected devices: name, hostname, address, since, version",
    .min_pos = 0,
    .max_pos = 0,
    .start = devices_start,
    .on_response = devices_response,
};
