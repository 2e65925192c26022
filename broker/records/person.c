/* tether person export NAME (admins): every record that names one person, as JSON objects, a
 * section and a page at a time on the store's reader. Section 0 says who they are (the broker's
 * people row and ssh keys, when they are a technician or an admin) and audits the export
 * (person-export); sections 1..6 are store_px_t. Rows become JSON here (jansson), so the
 * console writes them out as they come. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/hex.h"
#include "tt/msg.h"

#define MOD "person"

typedef struct {
  broker_creq_t h;
  char name[STORE_NAME_MAX];
  uint32_t section;
  int64_t after, head, next;
  bool done;
  uint32_t n;
  char *records[TT_PERSON_PAGE_MAX + TT_SSH_KEYS_PER_PERSON + 1];
} px_req_t;

static void add(px_req_t *x, json_t *o) {
  if (!o) return;
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (s && x->n < sizeof x->records / sizeof x->records[0]) x->records[x->n++] = s;
  else free(s);
}

static int key_cb(void *ctx, const store_ssh_key_t *k) {
  add(ctx, json_pack("{s:s,s:s,s:s,s:i,s:s,s:I,s:s}", "record", "ssh_key", "fingerprint", k->fingerprint, "type",
                     k->type, "bits", (int)k->bits, "comment", k->comment, "added_ms", (json_int_t)k->added_ms,
                     "added_by", k->added_by));
  return 0;
}

static int profile(broker_store_t *s, px_req_t *x) {
  store_person_t p;
  int rc = store_person_get(s, x->name, &p);
  if (rc == 0) {
    add(x, json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:I,s:s,s:b,s:i}", "record", "person", "name", p.name, "role",
                     p.role == STORE_PERSON_ADMIN ? "admin" : "technician", "first_seen_ms", (json_int_t)p.first_seen_ms,
                     "last_seen_ms", (json_int_t)p.last_seen_ms, "added_by", p.added_by, "added_ms",
                     (json_int_t)p.added_ms, "note", p.note, "revoked", p.revoked, "level", p.level));
    rc = store_ssh_key_list(s, STORE_SSH_KEYS_OF, x->name, key_cb, x);
  } else if (rc == TT_ENOTFOUND) {
    rc = 0; /* an employee: known by the records that name them */
  }
  x->done = true;
  return rc;
}

static json_t *ticket_json(const store_ticket_t *t) {
  return json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:I,s:I,s:I,s:I}", "record", "ticket", "id",
                   (json_int_t)t->id, "device", t->device, "requester", t->requester, "assignee", t->assignee,
                   "created_by", t->created_by, "summary", t->summary, "source", t->source, "priority", (int)t->priority,
                   "level", t->level, "state", (int)t->state, "created_ms", (json_int_t)t->created_ms, "updated_ms",
                   (json_int_t)t->updated_ms, "first_response_ms", (json_int_t)t->first_response_ms, "resolved_ms",
                   (json_int_t)t->resolved_ms);
}

static int diag_cb(void *ctx, const store_diag_t *d, const uint8_t *zbody, size_t zlen) {
  (void)zbody, (void)zlen;
  add(ctx, json_pack("{s:s,s:I,s:I,s:I,s:s,s:s,s:I,s:I,s:s}", "record", "diagnostics", "id", (json_int_t)d->id,
                     "ticket", (json_int_t)d->ticket, "session", (json_int_t)d->session, "device", d->device, "person",
                     d->person, "taken_ms", (json_int_t)d->taken_ms, "size", (json_int_t)d->size, "sha256",
                     d->sha256));
  return 0;
}

static int audit_cb(void *ctx, const store_audit_t *e) {
  char hash[TT_HEX_CAP(32)];
  tt_hex(hash, sizeof hash, e->hash, 32);
  add(ctx, json_pack("{s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:s}", "record", "audit", "id", (json_int_t)e->id, "ts_ms",
                     (json_int_t)e->ts_ms, "actor", e->actor, "action", e->action, "target", e->target, "detail",
                     e->detail, "hash", hash));
  return 1; /* one entry a call */
}

static int one(broker_store_t *s, px_req_t *x, int64_t id) {
  int rc = 0;
  switch ((store_px_t)x->section) {
  case STORE_PX_TICKETS: {
    store_ticket_t t;
    if ((rc = store_ticket_get(s, id, &t)) == 0) add(x, ticket_json(&t));
    break;
  }
  case STORE_PX_EVENTS: {
    store_ticket_event_t e;
    if ((rc = store_ticket_event_get(s, id, &e)) == 0)
      add(x, json_pack("{s:s,s:I,s:I,s:I,s:s,s:s,s:s}", "record", "event", "id", (json_int_t)e.id, "ticket",
                       (json_int_t)e.ticket, "ts_ms", (json_int_t)e.ts_ms, "actor", e.actor, "kind", e.kind, "text",
                       e.text));
    break;
  }
  case STORE_PX_SESSIONS: {
    store_session_t v;
    if ((rc = store_session_get(s, id, &v)) == 0)
      add(x, json_pack("{s:s,s:I,s:I,s:s,s:s,s:i,s:I,s:I,s:b,s:s,s:I,s:s,s:s}", "record", "session", "id",
                       (json_int_t)v.id, "ticket", (json_int_t)v.ticket, "device", v.device, "person", v.person,
                       "access", (int)v.access, "started_ms", (json_int_t)v.started_ms, "expires_ms",
                       (json_int_t)v.expires_ms, "unattended", v.unattended, "consent_by", v.consent_by, "ended_ms",
                       (json_int_t)v.ended_ms, "ended_by", v.ended_by, "end_reason", v.end_reason));
    break;
  }
  case STORE_PX_RECORDINGS: {
    store_recording_t r;
    if ((rc = store_recording_get(s, id, &r)) == 0)
      add(x, json_pack("{s:s,s:I,s:I,s:I,s:s,s:s,s:I,s:I,s:I,s:s,s:b,s:I,s:I}", "record", "recording", "id",
                       (json_int_t)r.id, "session", (json_int_t)r.session, "ticket", (json_int_t)r.ticket, "device",
                       r.device, "person", r.person, "started_ms", (json_int_t)r.started_ms, "ended_ms",
                       (json_int_t)r.ended_ms, "size", (json_int_t)r.size, "sha256", r.sha256, "failed", r.failed,
                       "expired_ms", (json_int_t)r.expired_ms, "erased", (json_int_t)r.erased));
    break;
  }
  case STORE_PX_DIAG: rc = store_diag_get(s, id, diag_cb, x); break;
  case STORE_PX_AUDIT: {
    store_audit_filter_t f = {.after_id = id - 1, .limit = 1};
    rc = store_audit_list(s, &f, audit_cb, x);
    if (rc == 1) rc = 0;
    break;
  }
  }
  return rc == TT_ENOTFOUND ? 0 : rc; /* gone since the ids were read (a sweep): left out */
}

static int px_run(broker_store_t *s, store_req_t *r) {
  px_req_t *x = (px_req_t *)r;
  if (x->section == 0) return profile(s, x);
  int64_t ids[TT_PERSON_PAGE_MAX], to = 0;
  uint32_t n = 0;
  bool audit = x->section == STORE_PX_AUDIT;
  int rc = store_person_ids(s, (store_px_t)x->section, x->name, x->after, audit ? TT_PERSON_AUDIT_WINDOW : 0, ids,
                            TT_PERSON_PAGE_MAX, &n, &to);
  for (uint32_t i = 0; rc == 0 && i < n; i++) rc = one(s, x, ids[i]);
  if (rc) return rc;
  if (audit) {
    x->next = to;
    x->done = n < TT_PERSON_PAGE_MAX && to >= x->head;
  } else {
    x->next = n ? ids[n - 1] : x->after;
    x->done = n < TT_PERSON_PAGE_MAX;
  }
  return 0;
}

static void px_done(store_req_t *r) {
  px_req_t *x = (px_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (c) {
    int rc;
    if (r->rc) {
      rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read its store");
    } else {
      ProtobufCBinaryData recs[sizeof x->records / sizeof x->records[0]];
      for (uint32_t i = 0; i < x->n; i++) recs[i] = tt_text(x->records[i]);
      Tether__PersonExportPage p = TETHER__PERSON_EXPORT_PAGE__INIT;
      p.section = x->section;
      p.records = recs;
      p.n_records = x->n;
      p.next = (uint64_t)x->next;
      p.done = x->done;
      Tether__Response resp = TETHER__RESPONSE__INIT;
      resp.id = x->h.id;
      resp.body_case = TETHER__RESPONSE__BODY_PERSON_EXPORT;
      resp.person_export = &p;
      rc = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
    }
    if (rc) tt_link_close(c->link, rc, "peer not reading");
  }
  for (uint32_t i = 0; i < x->n; i++) free(x->records[i]);
  free(x);
}

int broker_person_export(broker_conn_t *c, uint32_t id, const Tether__PersonExportRequest *q) {
  char name[STORE_NAME_MAX];
  if (!q->name.len || tt_text_copy(name, sizeof name, q->name) || strchr(name, '"') || strchr(name, '\\'))
    return broker_reply_error(c, id, TT_EINVAL, "not a person's name");
  if (q->section > STORE_PX_AUDIT) return broker_reply_error(c, id, TT_EINVAL, "no such section");
  if (q->after > (uint64_t)INT64_MAX) return broker_reply_error(c, id, TT_EINVAL, "paging id out of range");
  px_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, px_run, px_done, "person_export");
  if (!x) return TT_ENOMEM;
  snprintf(x->name, sizeof x->name, "%s", name);
  x->section = q->section;
  x->after = (int64_t)q->after;
  uint8_t h[32];
  store_svc_audit_head(c->b->svc, &x->head, h);
  if (q->section == 0) broker_audit(c->b, c->id.name, "person-export", name, AUDIT_END);
  return broker_creq_submit(x);
}
