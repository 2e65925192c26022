/* tether person add NAME --role technician|admin [--level 1|2|3] [--note TEXT] [--json] (admin):
 * a person the broker should know before they first connect, so tickets can be assigned to
 * them; with --level, someone known already gets that support level.
 * tether people [--json] (admin): everyone the broker knows, seen at connect or added. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "tt/cert.h"
#include "tt/msg.h"

/* A broker that keeps claiming more pages cannot make the listing grow without end: rows,
 * and bytes of output held until the last page. */
#define PEOPLE_ROWS_MAX (1u << 20)
#define PEOPLE_BYTES_MAX (256l << 20)
#define NAME_SHOWN (TT_NAME_MAX * 4 + 1)
#define TEXT_SHOWN (TT_TEXT_MAX * 4 + 1)

static const char *role_name(Tether__Role r) {
  switch (r) {
  case TETHER__ROLE__ROLE_TECHNICIAN: return "technician";
  case TETHER__ROLE__ROLE_ADMIN: return "admin";
  default: return "?";
  }
}

static void shown(char *dst, size_t cap, ProtobufCBinaryData t) {
  console_text(dst, cap, t);
  if (!dst[0]) snprintf(dst, cap, "-");
}

static void person_json(FILE *o, const Tether__Person *p) {
  fputs("{\"name\":", o);
  console_json_bytes(o, p->name);
  fprintf(o, ",\"role\":\"%s\",\"first_seen\":", role_name(p->role));
  console_json_time(o, p->first_seen_ms);
  fputs(",\"last_seen\":", o);
  console_json_time(o, p->last_seen_ms);
  fputs(",\"added_by\":", o);
  console_json_bytes(o, p->added_by);
  fputs(",\"added\":", o);
  console_json_time(o, p->added_ms);
  fputs(",\"note\":", o);
  console_json_bytes(o, p->note);
  fprintf(o, ",\"revoked\":%s,\"level\":%u}", p->revoked ? "true" : "false", (unsigned)p->level);
}

/* -- person add ----------------------------------------------------------------------------- */

static Tether__Role g_role;

static int add_check(console_t *c) {
  if (!tt_name_valid(c->arg[0]))
    return console_usage_error("'%s' is not a person's name: 1 to %u letters, digits, . _ @ - "
                               "(the name in their certificate)", c->arg[0], TT_NAME_MAX);
  if (strcmp(c->cfg.person_role, "technician") == 0) g_role = TETHER__ROLE__ROLE_TECHNICIAN;
  else if (strcmp(c->cfg.person_role, "admin") == 0) g_role = TETHER__ROLE__ROLE_ADMIN;
  else if (!c->cfg.person_role[0]) return console_usage_error("--role is required: technician or admin");
  else return console_usage_error("--role: want technician or admin");
  if (!tt_text_valid(tt_text(c->cfg.token_note), TT_TEXT_MAX))
    return console_usage_error("--note: only printable text (no control characters), at most %u bytes",
                               TT_TEXT_MAX);
  /* The option's bounds are 0..3, 0 meaning not given (the broker's default: level 1). */
  if (c->cfg.level < 0 || c->cfg.level > 3) return console_usage_error("--level: 1, 2 or 3");
  return 0;
}

static int add_start(console_t *c) {
  Tether__PersonAddRequest q = TETHER__PERSON_ADD_REQUEST__INIT;
  q.name = tt_text(c->arg[0]);
  q.role = g_role;
  q.note = tt_text(c->cfg.token_note);
  q.level = (uint32_t)c->cfg.level;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_PERSON_ADD;
  r.person_add = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_PERSON);
}

static int add_response(console_t *c, const Tether__Response *r) {
  const Tether__Person *p = r->person;
  if (!p || !p->name.len) return TT_EPROTO;
  if (c->json) {
    person_json(stdout, p);
    fputc('\n', stdout);
  } else {
    char name[NAME_SHOWN];
    shown(name, sizeof(name), p->name);
    /* With a level, someone known already may only have had it set. */
    if (c->cfg.level) printf("%s %s, level %u\n", role_name(p->role), name, (unsigned)p->level);
    else printf("added %s %s\n", role_name(p->role), name);
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_person_add = {
    .name = "person",
    .sub = "add",
    .args = "NAME --role technician|admin [--level 1|2|3] [--note TEXT] [--json]",
    .help = "admin: make a person known before they first connect (tickets can then be assigned to them); "
            "--level sets anyone's support level (3: writes the knowledge base)",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = add_check,
    .start = add_start,
    .on_response = add_response,
};

/* -- people --------------------------------------------------------------------------------- */

/* The listing is written to memory and printed whole once the last page arrived, so a
 * failure on a later page never leaves half a table or unbalanced JSON on stdout. */
typedef struct {
  char after[TT_NAME_MAX + 1];
  size_t rows;
  char *text;
  size_t len;
  FILE *out;
} people_state_t;

static people_state_t g_pl;

static void people_discard(void) {
  if (g_pl.out) fclose(g_pl.out);
  g_pl.out = NULL;
  free(g_pl.text);
  g_pl.text = NULL;
}

static int people_page(console_t *c) {
  Tether__PeopleListRequest q = TETHER__PEOPLE_LIST_REQUEST__INIT;
  q.after = tt_text(g_pl.after);
  q.limit = TT_PEOPLE_PAGE_MAX;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_PEOPLE_LIST;
  r.people_list = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_PEOPLE_LIST);
}

static int people_start(console_t *c) {
  c->state = &g_pl;
  atexit(people_discard);
  g_pl.out = open_memstream(&g_pl.text, &g_pl.len);
  if (!g_pl.out) return TT_ENOMEM;
  if (c->json) fputc('[', g_pl.out);
  else
    fprintf(g_pl.out, "%-20s %-10s %-20s %-20s %-16s %-7s %-5s %s\n", "NAME", "ROLE", "FIRST SEEN", "LAST SEEN",
            "ADDED BY", "REVOKED", "LEVEL", "NOTE");
  return people_page(c);
}

static void when_text(char *dst, size_t cap, uint64_t ms, const char *none) {
  if (ms) console_iso(dst, cap, ms, false);
  else snprintf(dst, cap, "%s", none);
}

static void person_row(FILE *o, const Tether__Person *p) {
  char name[NAME_SHOWN], by[NAME_SHOWN], note[TEXT_SHOWN], first[40], last[40];
  shown(name, sizeof(name), p->name);
  shown(by, sizeof(by), p->added_by);
  console_text(note, sizeof(note), p->note);
  when_text(first, sizeof(first), p->first_seen_ms, "never");
  when_text(last, sizeof(last), p->last_seen_ms, "never");
  fprintf(o, "%-20s %-10s %-20s %-20s %-16s %-7s %-5u %s\n", name, role_name(p->role), first, last, by,
          p->revoked ? "yes" : "no", (unsigned)p->level, note);
}

static int people_response(console_t *c, const Tether__Response *r) {
  const Tether__PeopleList *l = r->people_list;
  if (!l || l->n_people > TT_PEOPLE_PAGE_MAX) return TT_EPROTO;
  if (g_pl.rows + l->n_people > PEOPLE_ROWS_MAX || (g_pl.out && ftell(g_pl.out) > PEOPLE_BYTES_MAX))
    return TT_ETOOBIG;
  for (size_t i = 0; i < l->n_people; i++) {
    const Tether__Person *p = l->people[i];
    char name[TT_NAME_MAX + 1];
    /* Pages follow names upwards: anything else is a broker that would page forever. */
    if (tt_text_copy(name, sizeof(name), p->name) || !name[0] || strcmp(name, g_pl.after) <= 0)
      return TT_EPROTO;
    memcpy(g_pl.after, name, sizeof(name));
    if (c->json) {
      if (g_pl.rows) fputc(',', g_pl.out);
      person_json(g_pl.out, p);
    } else {
      person_row(g_pl.out, p);
    }
    g_pl.rows++;
  }
  if (l->more && l->n_people > 0) return people_page(c);
  if (c->json) fputs("]\n", g_pl.out);
  if (fclose(g_pl.out) != 0) {
    g_pl.out = NULL;
    return TT_ENOMEM;
  }
  g_pl.out = NULL;
  if (c->json || g_pl.rows) fwrite(g_pl.text, 1, g_pl.len, stdout);
  else fprintf(stderr, "(nobody yet)\n");
  fflush(stdout);
  people_discard();
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_people = {
    .name = "people",
    .args = "[--json]",
    .help = "admin: the technicians and admins the broker knows (seen at connect or added)",
    .switches = CONSOLE_SW_JSON,
    .start = people_start,
    .on_response = people_response,
};
