/* Tickets: tether ticket new, tickets, ticket show, and the changes to one ticket (assign,
 * escalate, comment, resolve, close, reopen; link and unlink a knowledge-base article). The
 * broker decides who may do what; the console checks the arguments and prints the answers. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "tt/msg.h"

/* A broker that keeps claiming more pages cannot make the listing grow without end: rows,
 * and bytes of output held until the last page. */
#define TICKETS_ROWS_MAX (1u << 18)
#define TICKETS_BYTES_MAX (64l << 20)
#define NAME_SHOWN (TT_NAME_MAX * 4 + 1)
#define TEXT_SHOWN (TT_TEXT_MAX * 4 + 1)

static const char *const prio_names[] = {"normal", "low", "normal", "high", "urgent"};
static const char *const state_names[] = {"?", "open", "resolved", "closed"};

static const char *prio_name(Tether__TicketPriority p) {
  return (unsigned)p < sizeof(prio_names) / sizeof(prio_names[0]) ? prio_names[p] : "?";
}

static const char *state_name(Tether__TicketState s) {
  return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

static void shown(char *dst, size_t cap, ProtobufCBinaryData t) {
  console_text(dst, cap, t);
  if (!dst[0]) snprintf(dst, cap, "-");
}

/* The next SLA time that matters: the first response while there is none, then the
 * resolution. 0 when nothing is due (not open, or no SLA configured). */
static uint64_t next_due(const Tether__Ticket *t) {
  if (t->state != TETHER__TICKET_STATE__TICKET_OPEN) return 0;
  if (!t->first_response_ms && t->first_response_due_ms) return t->first_response_due_ms;
  return t->resolution_due_ms;
}

static void due_text(char *dst, size_t cap, uint64_t due, uint64_t now) {
  char d[32];
  if (!due) snprintf(dst, cap, "-");
  else if (due <= now) {
    console_duration(d, sizeof(d), now - due);
    snprintf(dst, cap, "OVERDUE %s", d);
  } else {
    console_duration(d, sizeof(d), due - now);
    snprintf(dst, cap, "in %s", d);
  }
}

/* Times are unix ms (0 = not yet), like the wire, so scripts can do arithmetic on them. */
static void ticket_json(FILE *o, const Tether__Ticket *t) {
  fprintf(o, "{\"id\":\"T-%" PRIu64 "\",\"device\":", t->id);
  console_json_bytes(o, t->device);
  fputs(",\"summary\":", o);
  console_json_bytes(o, t->summary);
  fputs(",\"requester\":", o);
  console_json_bytes(o, t->requester);
  fputs(",\"assignee\":", o);
  console_json_bytes(o, t->assignee);
  fputs(",\"external_id\":", o);
  console_json_bytes(o, t->external_id);
  fprintf(o, ",\"priority\":\"%s\",\"level\":%u,\"state\":\"%s\",\"created_by\":", prio_name(t->priority),
          (unsigned)t->level, state_name(t->state));
  console_json_bytes(o, t->created_by);
  fputs(",\"source\":", o);
  console_json_bytes(o, t->source.len ? t->source : tt_text("technician"));
  fprintf(o, ",\"parent\":%s", t->parent ? "" : "null");
  if (t->parent) fprintf(o, "\"T-%" PRIu64 "\"", t->parent);
  uint64_t due = next_due(t);
  fprintf(o,
          ",\"created_ms\":%" PRIu64 ",\"updated_ms\":%" PRIu64 ",\"first_response_due_ms\":%" PRIu64
          ",\"first_response_ms\":%" PRIu64 ",\"resolution_due_ms\":%" PRIu64 ",\"resolved_ms\":%" PRIu64
          ",\"next_due_ms\":%" PRIu64 ",\"overdue\":%s}",
          t->created_ms, t->updated_ms, t->first_response_due_ms, t->first_response_ms, t->resolution_due_ms,
          t->resolved_ms, due, due && due <= console_now_ms() ? "true" : "false");
}

static int parse_ticket_arg(console_t *c, uint64_t *id) {
  if (console_parse_id(c->arg[0], 'T', false, id))
    return console_usage_error("'%s' is not a ticket (want T-3 or 3)", c->arg[0]);
  return 0;
}

/* -- ticket new ------------------------------------------------------------------------- */

static int parse_priority(const char *s, Tether__TicketPriority *p) {
  static const struct {
    const char *name;
    Tether__TicketPriority p;
  } map[] = {{"low", TETHER__TICKET_PRIORITY__TICKET_LOW},
             {"normal", TETHER__TICKET_PRIORITY__TICKET_NORMAL},
             {"high", TETHER__TICKET_PRIORITY__TICKET_HIGH},
             {"urgent", TETHER__TICKET_PRIORITY__TICKET_URGENT}};
  *p = TETHER__TICKET_PRIORITY__TICKET_NORMAL;
  if (!s[0]) return 0;
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strcmp(s, map[i].name) == 0) {
      *p = map[i].p;
      return 0;
    }
  return TT_EINVAL;
}

static int check_device(const char *d, bool required) {
  if (required && !d[0]) return console_usage_error("--device is required");
  if (!tt_text_valid(tt_text(d), TT_NAME_MAX))
    return console_usage_error("--device: not a device id (up to %u printable bytes)", TT_NAME_MAX);
  return 0;
}

static int new_check(console_t *c) {
  Tether__TicketPriority p;
  if (check_device(c->cfg.audit_device, true)) return 2;
  if (!c->cfg.summary[0]) return console_usage_error("--summary is required: what is wrong, one line");
  if (!tt_text_valid(tt_text(c->cfg.summary), TT_TEXT_MAX))
    return console_usage_error("--summary: only printable text (no control characters)");
  if (strlen(c->cfg.requester) > TT_NAME_MAX)
    return console_usage_error("--requester: at most %u bytes", TT_NAME_MAX);
  if (!tt_text_valid(tt_text(c->cfg.requester), TT_NAME_MAX))
    return console_usage_error("--requester: only printable text (no control characters)");
  if (!tt_text_valid(tt_text(c->cfg.external_id), TT_NAME_MAX))
    return console_usage_error("--external-id: only printable text (no control characters)");
  if (parse_priority(c->cfg.priority, &p))
    return console_usage_error("--priority: want low, normal, high or urgent");
  return 0;
}

static int new_start(console_t *c) {
  Tether__TicketNewRequest q = TETHER__TICKET_NEW_REQUEST__INIT;
  q.device = tt_text(c->cfg.audit_device);
  q.summary = tt_text(c->cfg.summary);
  q.requester = tt_text(c->cfg.requester);
  q.external_id = tt_text(c->cfg.external_id);
  if (parse_priority(c->cfg.priority, &q.priority)) return TT_EINVAL; /* checked before */
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_TICKET_NEW;
  r.ticket_new = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_TICKET);
}

static int new_response(console_t *c, const Tether__Response *r) {
  const Tether__Ticket *t = r->ticket;
  if (!t || !t->id) return TT_EPROTO;
  if (c->json) {
    ticket_json(stdout, t);
    fputc('\n', stdout);
  } else {
    printf("T-%" PRIu64 "\n", t->id);
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_ticket_new = {
    .name = "ticket",
    .sub = "new",
    .args = "--device D --summary TEXT [--requester NAME] [--priority low|normal|high|urgent] "
            "[--external-id ID] [--json]",
    .help = "open a ticket for a device; prints its id (T-3)",
    .switches = CONSOLE_SW_JSON,
    .check = new_check,
    .start = new_start,
    .on_response = new_response,
};

/* -- tickets ---------------------------------------------------------------------------- */

/* The listing is written to memory and printed whole once the last page arrived, so a
 * failure on a later page never leaves half a table or unbalanced JSON on stdout. */
typedef struct {
  uint32_t mask;
  uint64_t after_id;
  size_t rows;
  char *text;
  size_t len;
  FILE *out;
} tickets_state_t;

static tickets_state_t g_tl;

static void tickets_discard(void) {
  if (g_tl.out) fclose(g_tl.out);
  g_tl.out = NULL;
  free(g_tl.text);
  g_tl.text = NULL;
}

static int parse_states(const char *s, uint32_t *mask) {
  char word[16];
  *mask = 0;
  while (*s) {
    size_t n = strcspn(s, ",");
    if (n == 0 || n >= sizeof(word)) return TT_EINVAL;
    memcpy(word, s, n);
    word[n] = '\0';
    if (strcmp(word, "all") == 0) *mask |= 0xeu;
    else if (strcmp(word, "open") == 0) *mask |= 1u << TETHER__TICKET_STATE__TICKET_OPEN;
    else if (strcmp(word, "resolved") == 0) *mask |= 1u << TETHER__TICKET_STATE__TICKET_RESOLVED;
    else if (strcmp(word, "closed") == 0) *mask |= 1u << TETHER__TICKET_STATE__TICKET_CLOSED;
    else return TT_EINVAL;
    s += n;
    if (*s == ',') s++;
  }
  if (*mask == 0xeu) *mask = 0; /* every state: let the broker skip the filter */
  return 0;
}

static int tickets_check(console_t *c) {
  if (check_device(c->cfg.audit_device, false)) return 2;
  const char *st = c->cfg.state[0] ? c->cfg.state : "open";
  if (parse_states(st, &g_tl.mask))
    return console_usage_error("--state: want open, resolved, closed or all (several: open,resolved)");
  return 0;
}

static int tickets_page(console_t *c) {
  Tether__TicketListRequest q = TETHER__TICKET_LIST_REQUEST__INIT;
  q.mine = c->mine;
  q.state_mask = g_tl.mask;
  q.device = tt_text(c->cfg.audit_device);
  q.after_id = g_tl.after_id;
  q.limit = TT_TICKET_PAGE_MAX;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_TICKET_LIST;
  r.ticket_list = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_TICKET_LIST);
}

static int tickets_start(console_t *c) {
  c->state = &g_tl;
  atexit(tickets_discard);
  g_tl.out = open_memstream(&g_tl.text, &g_tl.len);
  if (!g_tl.out) return TT_ENOMEM;
  if (c->json) fputc('[', g_tl.out);
  else
    fprintf(g_tl.out, "%-7s %-6s %-3s %-8s %-20s %-16s %-14s %s\n", "ID", "PRI", "LVL", "STATE", "DEVICE",
            "ASSIGNEE", "DUE", "SUMMARY");
  return tickets_page(c);
}

static void ticket_row(FILE *o, const Tether__Ticket *t, uint64_t now) {
  char id[24], dev[NAME_SHOWN], who[NAME_SHOWN], sum[TEXT_SHOWN], due[40];
  snprintf(id, sizeof(id), "T-%" PRIu64, t->id);
  shown(dev, sizeof(dev), t->device);
  shown(who, sizeof(who), t->assignee);
  shown(sum, sizeof(sum), t->summary);
  due_text(due, sizeof(due), next_due(t), now);
  fprintf(o, "%-7s %-6s %-3u %-8s %-20s %-16s %-14s %s\n", id, prio_name(t->priority), (unsigned)t->level,
          state_name(t->state), dev, who, due, sum);
}

static int tickets_response(console_t *c, const Tether__Response *r) {
  const Tether__TicketList *l = r->ticket_list;
  if (!l || l->n_tickets > TT_TICKET_PAGE_MAX) return TT_EPROTO;
  if (g_tl.rows + l->n_tickets > TICKETS_ROWS_MAX || (g_tl.out && ftell(g_tl.out) > TICKETS_BYTES_MAX))
    return TT_ETOOBIG;
  uint64_t now = console_now_ms();
  for (size_t i = 0; i < l->n_tickets; i++) {
    const Tether__Ticket *t = l->tickets[i];
    /* Pages follow ids upwards: anything else is a broker that would page forever. */
    if (t->id <= g_tl.after_id) return TT_EPROTO;
    g_tl.after_id = t->id;
    if (c->json) {
      if (g_tl.rows) fputc(',', g_tl.out);
      ticket_json(g_tl.out, t);
    } else {
      ticket_row(g_tl.out, t, now);
    }
    g_tl.rows++;
  }
  if (l->more && l->n_tickets > 0) return tickets_page(c);
  if (c->json) fputs("]\n", g_tl.out);
  if (fclose(g_tl.out) != 0) {
    g_tl.out = NULL;
    return TT_ENOMEM;
  }
  g_tl.out = NULL;
  if (c->json || g_tl.rows) fwrite(g_tl.text, 1, g_tl.len, stdout);
  else fprintf(stderr, "(no tickets)\n");
  fflush(stdout);
  tickets_discard();
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_tickets = {
    .name = "tickets",
    .args = "[--mine] [--state open|resolved|closed|all[,...]] [--device D] [--json]",
    .help = "tickets (default: the open ones), with their next SLA time",
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_MINE,
    .check = tickets_check,
    .start = tickets_start,
    .on_response = tickets_response,
};

/* -- ticket show ------------------------------------------------------------------------ */

static uint64_t g_ticket_id;

static int id_check(console_t *c) {
  return parse_ticket_arg(c, &g_ticket_id) ? 2 : 0;
}

static void ticket_not_found(console_t *c) {
  console_fail(c, "no such ticket: T-%" PRIu64, g_ticket_id);
}

static int show_start(console_t *c) {
  Tether__TicketShowRequest q = TETHER__TICKET_SHOW_REQUEST__INIT;
  q.id = g_ticket_id;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_TICKET_SHOW;
  r.ticket_show = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_TICKET_DETAIL);
}

static void event_json(FILE *o, const Tether__TicketEvent *e) {
  fprintf(o, "{\"id\":%" PRIu64 ",\"ts_ms\":%" PRIu64 ",\"actor\":", e->id, e->ts_ms);
  console_json_bytes(o, e->actor);
  fputs(",\"kind\":", o);
  console_json_bytes(o, e->kind);
  fputs(",\"text\":", o);
  console_json_bytes(o, e->text);
  fputc('}', o);
}

static void show_time(const char *label, uint64_t ms, uint64_t due, uint64_t now) {
  char when[40], d[40];
  if (!ms) {
    printf("%s: -\n", label);
    return;
  }
  console_iso(when, sizeof(when), ms, false);
  if (due) {
    due_text(d, sizeof(d), due, now);
    printf("%s: %s (%s)\n", label, when, d);
  } else printf("%s: %s\n", label, when);
}

/* The knowledge base's articles with the ticket: those that solved it (linked), and those
 * written for the health check that raised it. */
static bool articles_ok(const Tether__TicketDetail *d) {
  if (d->n_articles > TT_KB_LINKS_MAX + TT_KB_HITS_MAX) return false;
  for (size_t i = 0; i < d->n_articles; i++)
    if (!d->articles[i]->id || d->articles[i]->n_checks > TT_KB_CHECKS_MAX) return false;
  return true;
}

static void articles_json(FILE *o, const Tether__TicketDetail *d) {
  fputs(",\"articles\":[", o);
  for (size_t i = 0; i < d->n_articles; i++) {
    const Tether__KbHit *h = d->articles[i];
    fprintf(o, "%s{\"id\":\"KB-%" PRIu64 "\",\"title\":", i ? "," : "", h->id);
    console_json_bytes(o, h->title);
    fprintf(o, ",\"linked\":%s,\"solved\":%u}", h->linked ? "true" : "false", (unsigned)h->solved);
  }
  fputc(']', o);
}

static void articles_text(const Tether__TicketDetail *d) {
  if (!d->n_articles) return;
  printf("\narticles:\n");
  for (size_t i = 0; i < d->n_articles; i++) {
    const Tether__KbHit *h = d->articles[i];
    char id[32], title[TEXT_SHOWN];
    snprintf(id, sizeof(id), "KB-%" PRIu64, h->id);
    console_text(title, sizeof(title), h->title);
    printf("  %-8s %-10s %s (solved %u)\n", id, h->linked ? "linked" : "for check", title, (unsigned)h->solved);
  }
}

static void show_text(const Tether__TicketDetail *d) {
  const Tether__Ticket *t = d->ticket;
  char text[TEXT_SHOWN], when[40];
  uint64_t now = console_now_ms();
  bool open = t->state == TETHER__TICKET_STATE__TICKET_OPEN;
  printf("ticket: T-%" PRIu64 "\n", t->id);
  shown(text, sizeof(text), t->summary);
  printf("summary: %s\n", text);
  shown(text, sizeof(text), t->device);
  printf("device: %s\n", text);
  printf("state: %s\npriority: %s\nlevel: %u\n", state_name(t->state), prio_name(t->priority), (unsigned)t->level);
  shown(text, sizeof(text), t->assignee);
  printf("assignee: %s\n", t->assignee.len ? text : "(unassigned)");
  shown(text, sizeof(text), t->requester);
  printf("requester: %s\n", text);
  shown(text, sizeof(text), t->source);
  printf("source: %s\n", t->source.len ? text : "technician");
  if (t->parent) printf("part of: T-%" PRIu64 "\n", t->parent);
  if (t->external_id.len) {
    shown(text, sizeof(text), t->external_id);
    printf("external id: %s\n", text);
  }
  shown(text, sizeof(text), t->created_by);
  console_iso(when, sizeof(when), t->created_ms, false);
  printf("created: %s by %s\n", when, text);
  show_time("updated", t->updated_ms, 0, now);
  show_time("first response due", t->first_response_due_ms,
            open && !t->first_response_ms ? t->first_response_due_ms : 0, now);
  show_time("first response", t->first_response_ms, 0, now);
  show_time("resolution due", t->resolution_due_ms, open ? t->resolution_due_ms : 0, now);
  show_time("resolved", t->resolved_ms, 0, now);
  printf("\ntimeline");
  if (d->events_total > d->n_events)
    printf(" (the newest %zu of %u events)", d->n_events, (unsigned)d->events_total);
  printf(":\n");
  for (size_t i = 0; i < d->n_events; i++) {
    const Tether__TicketEvent *e = d->events[i];
    char who[NAME_SHOWN], kind[NAME_SHOWN];
    console_iso(when, sizeof(when), e->ts_ms, false);
    shown(who, sizeof(who), e->actor);
    shown(kind, sizeof(kind), e->kind);
    console_text(text, sizeof(text), e->text);
    printf("  %s  %-18s %-16s %s\n", when, kind, who, text);
  }
  if (d->n_events == 0) printf("  (none)\n");
  if (d->n_alerts) {
    printf("\nalerts:");
    for (size_t i = 0; i < d->n_alerts; i++) printf(" A-%" PRIu64, d->alerts[i]);
    printf("\n");
  }
  if (d->children_total) {
    printf("\nstorm members (%u tickets):", (unsigned)d->children_total);
    for (size_t i = 0; i < d->n_children; i++) printf(" T-%" PRIu64, d->children[i]);
    if (d->children_total > d->n_children) printf(" ...");
    printf("\n");
  }
  articles_text(d);
}

static void ids_json(FILE *o, const char *name, char letter, const uint64_t *ids, size_t n) {
  fprintf(o, ",\"%s\":[", name);
  for (size_t i = 0; i < n; i++) fprintf(o, "%s\"%c-%" PRIu64 "\"", i ? "," : "", letter, ids[i]);
  fputc(']', o);
}

static int show_response(console_t *c, const Tether__Response *r) {
  const Tether__TicketDetail *d = r->ticket_detail;
  if (!d || !d->ticket || d->n_events > TT_TICKET_EVENTS_PAGE_MAX || !articles_ok(d) ||
      d->n_children > TT_TICKET_CHILDREN_MAX || d->n_alerts > 64)
    return TT_EPROTO;
  if (c->json) {
    fputs("{\"ticket\":", stdout);
    ticket_json(stdout, d->ticket);
    fputs(",\"events\":[", stdout);
    for (size_t i = 0; i < d->n_events; i++) {
      if (i) fputc(',', stdout);
      event_json(stdout, d->events[i]);
    }
    printf("],\"events_total\":%u", (unsigned)d->events_total);
    articles_json(stdout, d);
    ids_json(stdout, "alerts", 'A', d->alerts, d->n_alerts);
    ids_json(stdout, "children", 'T', d->children, d->n_children);
    printf(",\"children_total\":%u", (unsigned)d->children_total);
    fputs("}\n", stdout);
  } else {
    show_text(d);
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_ticket_show = {
    .name = "ticket",
    .sub = "show",
    .args = "T [--json]",
    .help = "one ticket: its fields, SLA times and timeline",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = id_check,
    .start = show_start,
    .on_response = show_response,
    .on_not_found = ticket_not_found,
};

/* -- changes to one ticket -------------------------------------------------------------- */

/* What the command asks for, decided by its check. */
static struct {
  Tether__TicketOp op;
  const char *text;
  uint32_t level;
  uint64_t article;
  bool public;
  bool wait;
} g_upd;

static int update_start(console_t *c) {
  Tether__TicketUpdateRequest q = TETHER__TICKET_UPDATE_REQUEST__INIT;
  q.id = g_ticket_id;
  q.op = g_upd.op;
  q.text = tt_text(g_upd.text ? g_upd.text : "");
  q.level = g_upd.level;
  q.article = g_upd.article;
  q.public_ = g_upd.public;
  q.wait = g_upd.wait;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_TICKET_UPDATE;
  r.ticket_update = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_TICKET);
}

static int update_response(console_t *c, const Tether__Response *r) {
  const Tether__Ticket *t = r->ticket;
  if (!t || !t->id) return TT_EPROTO;
  if (c->json) {
    ticket_json(stdout, t);
    fputc('\n', stdout);
    fflush(stdout);
    console_finish(c, 0);
    return 0;
  }
  char who[NAME_SHOWN];
  shown(who, sizeof(who), t->assignee);
  switch (g_upd.op) {
  case TETHER__TICKET_OP__TICKET_ASSIGN: printf("T-%" PRIu64 " assigned to %s\n", t->id, who); break;
  case TETHER__TICKET_OP__TICKET_ESCALATE:
    printf("T-%" PRIu64 " escalated to level %u\n", t->id, (unsigned)t->level);
    break;
  case TETHER__TICKET_OP__TICKET_COMMENT:
    printf("T-%" PRIu64 ": %s added\n", t->id, g_upd.public ? "public comment (the requester sees it)" : "comment");
    break;
  case TETHER__TICKET_OP__TICKET_LINK: printf("T-%" PRIu64 ": KB-%" PRIu64 " linked\n", t->id, g_upd.article); break;
  case TETHER__TICKET_OP__TICKET_UNLINK:
    printf("T-%" PRIu64 ": KB-%" PRIu64 " unlinked\n", t->id, g_upd.article);
    break;
  case TETHER__TICKET_OP__TICKET_HOLD:
    printf("T-%" PRIu64 " is on hold: its records outlive retention until it is released\n", t->id);
    break;
  case TETHER__TICKET_OP__TICKET_RELEASE: printf("T-%" PRIu64 " is no longer on hold\n", t->id); break;
  default: printf("T-%" PRIu64 " is %s\n", t->id, state_name(t->state)); break;
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

static int assign_check(console_t *c) {
  if (parse_ticket_arg(c, &g_ticket_id)) return 2;
  if (!c->arg[1][0] || !tt_text_valid(tt_text(c->arg[1]), TT_NAME_MAX))
    return console_usage_error("'%s' is not a person's name", c->arg[1]);
  g_upd.op = TETHER__TICKET_OP__TICKET_ASSIGN;
  g_upd.text = c->arg[1];
  return 0;
}

static int escalate_check(console_t *c) {
  if (parse_ticket_arg(c, &g_ticket_id)) return 2;
  if (c->cfg.level < 2) return console_usage_error("--level: want 2 or 3");
  g_upd.op = TETHER__TICKET_OP__TICKET_ESCALATE;
  g_upd.level = (uint32_t)c->cfg.level;
  return 0;
}

static int comment_check(console_t *c) {
  if (parse_ticket_arg(c, &g_ticket_id)) return 2;
  if (!c->arg[1][0]) return console_usage_error("the comment is empty");
  if (!tt_text_valid(tt_text(c->arg[1]), TT_TEXT_MAX))
    return console_usage_error("the comment must be one line of printable text, at most %u bytes", TT_TEXT_MAX);
  g_upd.op = TETHER__TICKET_OP__TICKET_COMMENT;
  g_upd.text = c->arg[1];
  g_upd.public = (c->args.switches & CONSOLE_SW_PUBLIC) != 0;
  g_upd.wait = (c->args.switches & CONSOLE_SW_WAIT) != 0;
  if (g_upd.wait && !g_upd.public)
    return console_usage_error("--wait is for a question the requester sees: add --public");
  return 0;
}

static int resolve_check(console_t *c) {
  if (parse_ticket_arg(c, &g_ticket_id)) return 2;
  if (!tt_text_valid(tt_text(c->cfg.token_note), TT_TEXT_MAX))
    return console_usage_error("--note must be one line of printable text, at most %u bytes", TT_TEXT_MAX);
  g_upd.op = TETHER__TICKET_OP__TICKET_RESOLVE;
  g_upd.text = c->cfg.token_note;
  return 0;
}

static int link_check(console_t *c) {
  if (parse_ticket_arg(c, &g_ticket_id)) return 2;
  if (console_parse_kb(c->arg[1], &g_upd.article))
    return console_usage_error("'%s' is not an article (want KB-3 or 3)", c->arg[1]);
  g_upd.op = strcmp(c->cmd->sub, "link") == 0 ? TETHER__TICKET_OP__TICKET_LINK : TETHER__TICKET_OP__TICKET_UNLINK;
  return 0;
}

static int close_check(console_t *c) {
  if (parse_ticket_arg(c, &g_ticket_id)) return 2;
  g_upd.op = TETHER__TICKET_OP__TICKET_CLOSE;
  return 0;
}

static int hold_check(console_t *c) {
  if (parse_ticket_arg(c, &g_ticket_id)) return 2;
  bool hold = strcmp(c->cmd->sub, "hold") == 0;
  if (hold && !c->cfg.revoke_reason[0])
    return console_usage_error("--reason is required: why the records are held (a legal hold, an investigation)");
  if (!tt_text_valid(tt_text(c->cfg.revoke_reason), TT_TEXT_MAX))
    return console_usage_error("--reason must be one line of printable text, at most %u bytes", TT_TEXT_MAX);
  g_upd.op = hold ? TETHER__TICKET_OP__TICKET_HOLD : TETHER__TICKET_OP__TICKET_RELEASE;
  g_upd.text = hold ? c->cfg.revoke_reason : "";
  return 0;
}

static int reopen_check(console_t *c) {
  if (parse_ticket_arg(c, &g_ticket_id)) return 2;
  g_upd.op = TETHER__TICKET_OP__TICKET_REOPEN;
  return 0;
}

#define UPDATE_CMD(var, word, usage, text, npos, chk)                                            \
  const console_cmd_t var = {                                                                    \
      .name = "ticket",                                                                          \
      .sub = word,                                                                               \
      .args = usage,                                                                             \
      .help = text,                                                                              \
      .min_pos = npos,                                                                           \
      .max_pos = npos,                                                                           \
      .switches = CONSOLE_SW_JSON,                                                               \
      .check = chk,                                                                              \
      .start = update_start,                                                                     \
      .on_response = update_response,                                                           \
      .on_not_found = ticket_not_found,                                                          \
  }

UPDATE_CMD(console_cmd_ticket_assign, "assign", "T PERSON",
           "take a ticket (technicians: PERSON is you); admins: give it to a known person", 2, assign_check);
UPDATE_CMD(console_cmd_ticket_escalate, "escalate", "T --level 2|3", "raise a ticket's support level", 1,
           escalate_check);
const console_cmd_t console_cmd_ticket_comment = {
    .name = "ticket",
    .sub = "comment",
    .args = "T TEXT [--public [--wait]]",
    .help = "add a comment to a ticket's timeline (--public: the requester sees it too; --wait: it asks them "
            "something, and the ticket waits on them until they answer)",
    .min_pos = 2,
    .max_pos = 2,
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_PUBLIC | CONSOLE_SW_WAIT,
    .check = comment_check,
    .start = update_start,
    .on_response = update_response,
    .on_not_found = ticket_not_found,
};
UPDATE_CMD(console_cmd_ticket_resolve, "resolve", "T [--note TEXT]",
           "mark a ticket resolved (ends its sessions)", 1, resolve_check);
UPDATE_CMD(console_cmd_ticket_close, "close", "T", "close a ticket (ends its sessions)", 1, close_check);
UPDATE_CMD(console_cmd_ticket_reopen, "reopen", "T", "reopen a resolved or closed ticket", 1, reopen_check);
UPDATE_CMD(console_cmd_ticket_hold, "hold", "T --reason TEXT",
           "admin: keep the ticket's records (recordings, diagnostics, audit) past retention", 1, hold_check);
UPDATE_CMD(console_cmd_ticket_release, "release", "T", "admin: end a hold; retention applies again", 1, hold_check);

/* The broker names what it did not find (the ticket or the article): its words are shown. */
const console_cmd_t console_cmd_ticket_link = {
    .name = "ticket",
    .sub = "link",
    .args = "T KB [--json]",
    .help = "the knowledge-base article that solved a ticket (ticket show lists it; the article counts it)",
    .min_pos = 2,
    .max_pos = 2,
    .switches = CONSOLE_SW_JSON,
    .check = link_check,
    .start = update_start,
    .on_response = update_response,
};

const console_cmd_t console_cmd_ticket_unlink = {
    .name = "ticket",
    .sub = "unlink",
    .args = "T KB [--json]",
    .help = "take back a ticket's link to an article",
    .min_pos = 2,
    .max_pos = 2,
    .switches = CONSOLE_SW_JSON,
    .check = link_check,
    .start = update_start,
    .on_response = update_response,
};
