/* `tether diag --attach`: the report the device sends through a DIAG relay is kept, as it
 * passes, on the session's ticket (D-n): so what is on the ticket is what the device said,
 * never the console's copy. Bounded by TT_DIAG_REPORT_MAX; stored (zstd, sha256) by the
 * writer thread with its audit entry and a timeline event; the relay hears back through
 * relay_diag_kept. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "broker.h"
#include "tt/hex.h"
#include "tt/log.h"

#define KEEP_ZSTD_LEVEL 3

struct broker_diag_keep_s {
  store_req_t req;          /* first: the service's */
  store_audit_rec_t audit;
  broker_t *b;
  relay_t *r;               /* NULL once the relay ended */
  bool submitted;
  tt_buf_t report;
  store_diag_t row;
  uint8_t *z;
  size_t zlen;
};

broker_diag_keep_t *broker_diag_keep_new(broker_t *b, relay_t *r, int64_t ticket, int64_t session,
                                         const char *device, const char *person) {
  broker_diag_keep_t *k = calloc(1, sizeof(*k));
  if (!k) return NULL;
  k->b = b;
  k->r = r;
  tt_buf_init(&k->report, TT_DIAG_REPORT_MAX);
  k->row.ticket = ticket;
  k->row.session = session;
  snprintf(k->row.device, sizeof(k->row.device), "%s", device);
  snprintf(k->row.person, sizeof(k->row.person), "%s", person);
  return k;
}

static void keep_free(broker_diag_keep_t *k) {
  tt_buf_free(&k->report);
  free(k->z);
  free(k);
}

int broker_diag_keep_data(broker_diag_keep_t *k, const uint8_t *p, size_t n) {
  return tt_buf_append(&k->report, p, n) ? TT_ETOOBIG : 0;
}

static int keep_run(broker_store_t *s, store_req_t *req) {
  broker_diag_keep_t *k = (broker_diag_keep_t *)req;
  size_t len = k->report.len, cap = ZSTD_compressBound(len);
  if (!(k->z = malloc(cap))) return TT_ENOMEM;
  size_t z = ZSTD_compress(k->z, cap, tt_buf_head(&k->report), len, KEEP_ZSTD_LEVEL);
  if (ZSTD_isError(z)) return TT_EZSTD;
  k->zlen = z;
  return store_diag_add(s, &k->row, k->z, k->zlen);
}

static void keep_done(store_req_t *req) {
  broker_diag_keep_t *k = (broker_diag_keep_t *)req;
  relay_t *r = k->r;
  if (req->rc) TT_ERROR("diag", "report not kept", "device=%s ticket=T-%lld err=%s", k->row.device,
                        (long long)k->row.ticket, tt_errname(req->rc));
  else {
    TT_INFO("diag", "report kept", "id=D-%lld device=%s ticket=T-%lld bytes=%lld", (long long)k->row.id,
            k->row.device, (long long)k->row.ticket, (long long)k->row.size);
    (void)!broker_ticket_event(k->b, k->row.ticket, k->row.person, "diag-attached",
                               "diagnostics of %s kept as D-%lld (%lld bytes, sha256 %.16s...)", k->row.device,
                               (long long)k->row.id, (long long)k->row.size, k->row.sha256);
  }
  if (r) relay_diag_kept(r, req->rc ? 0 : k->row.id, req->rc);
  keep_free(k);
}

int broker_diag_keep_finish(broker_diag_keep_t *k) {
  if (k->report.len == 0) return TT_EPROTO;
  k->row.taken_ms = (int64_t)broker_unix_ms();
  k->row.size = (int64_t)k->report.len;
  /* Hashed here, on the loop (at most TT_DIAG_REPORT_MAX: ~10 ms; a desktop's ~1 ms), so the
   * audit entry written with the row names it. */
  uint8_t h[32];
  unsigned hl = 32;
  if (EVP_Digest(tt_buf_head(&k->report), k->report.len, h, &hl, EVP_sha256(), NULL) != 1) return TT_ENOMEM;
  tt_hex(k->row.sha256, sizeof(k->row.sha256), h, sizeof(h));
  k->req.run = keep_run;
  k->req.done = keep_done;
  k->req.what = "diag_attach";
  k->req.lane = STORE_LANE_WRITE;
  k->req.audit = &k->audit;
  char ticket[24], session[24], size[24];
  snprintf(ticket, sizeof(ticket), "T-%lld", (long long)k->row.ticket);
  snprintf(session, sizeof(session), "S-%lld", (long long)k->row.session);
  snprintf(size, sizeof(size), "%zu", k->report.len);
  broker_audit_rec(&k->audit, k->row.person, "diag-attach", k->row.device, "ticket", ticket, "session", session,
                   "size", size, "sha256", k->row.sha256, AUDIT_END);
  int rc = store_svc_submit(k->b->svc, &k->req);
  if (rc == 0) k->submitted = true;
  return rc;
}

void broker_diag_keep_end(broker_diag_keep_t *k) {
  if (!k) return;
  if (k->submitted) k->r = NULL; /* keep_done frees it */
  else keep_free(k);
}
