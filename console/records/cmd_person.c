/* tether person export NAME [--dir DIR] (admins): everything the broker holds about one person
 * (a technician, an admin, or an employee by their local user name), as one JSON document:
 * who they are, then the tickets, ticket events, sessions, recordings, diagnostics reports and
 * audit entries that name them. Written as the pages come, so memory stays at one page. With
 * --dir the document is DIR/NAME.json and each recording's file (as stored, zstd) is fetched
 * beside it, R-n.cast.zst, checked against the sha256 the broker recorded.
 * tether person erase NAME --reason TEXT [--dry-run]: the erasure (broker/records/erase.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "console.h"
#include "tt/msg.h"

static const char *const k_sections[] = {"profile", "tickets", "events", "sessions", "recordings", "diagnostics",
                                         "audit"};
#define NSECTIONS (sizeof k_sections / sizeof k_sections[0])
#define SECTION_RECORDINGS 4u
/* Recordings an export with --dir fetches (the rest are listed, not fetched). */
#define PX_FILES_MAX 10000u

static struct {
  uint32_t section;
  uint64_t after;
  uint64_t records;
  bool first_in_section;
  FILE *out;                  /* stdout, or DIR/NAME.json */
  /* --dir: the recordings to fetch, and the one being written */
  uint64_t *files;
  size_t nfiles, next, fetched;
  uint64_t cur, size, got;
  uint8_t sha[32];
  int fd;
  EVP_MD_CTX *md;
  char path[600];
} g_px = {.fd = -1};

static int px_check(console_t *c) {
  const char *n = c->arg[0];
  if (!n[0] || strlen(n) > TT_NAME_MAX || strchr(n, '"') || strchr(n, '\\') || strchr(n, '/') ||
      !tt_text_valid(tt_text(n), TT_NAME_MAX))
    return console_usage_error("'%s' is not a person's name", n);
  return 0;
}

static int px_page(console_t *c) {
  Tether__PersonExportRequest q = TETHER__PERSON_EXPORT_REQUEST__INIT;
  q.name = tt_text(c->arg[0]);
  q.section = g_px.section;
  q.after = g_px.after;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_PERSON_EXPORT;
  r.person_export = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_PERSON_EXPORT);
}

static void px_discard(void) {
  if (g_px.fd >= 0) close(g_px.fd), unlink(g_px.path); /* a file cut short is not left behind */
  EVP_MD_CTX_free(g_px.md);
  free(g_px.files);
  if (g_px.out && g_px.out != stdout) fclose(g_px.out);
  memset(&g_px, 0, sizeof g_px);
  g_px.fd = -1;
}

static int px_start(console_t *c) {
  atexit(px_discard);
  g_px.out = stdout;
  if (c->cfg.person_dir[0]) {
    const char *d = c->cfg.person_dir;
    if (mkdir(d, 0700) != 0 && errno != EEXIST) {
      console_fail(c, "cannot make %s: %s", d, strerror(errno));
      return 0;
    }
    snprintf(g_px.path, sizeof g_px.path, "%.500s/%s.json", d, c->arg[0]);
    int fd = open(g_px.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || !(g_px.out = fdopen(fd, "w"))) {
      console_fail(c, "cannot write %s: %s", g_px.path, strerror(errno));
      if (fd >= 0) close(fd);
      g_px.out = NULL;
      return 0;
    }
  }
  char when[40];
  console_iso(when, sizeof when, console_now_ms(), false);
  fprintf(g_px.out, "{\"person\":");
  console_json_str(g_px.out, c->arg[0]);
  fprintf(g_px.out, ",\"exported\":\"%s\",\"broker\":", when);
  console_json_str(g_px.out, c->cfg.broker);
  fprintf(g_px.out, ",\"%s\":[", k_sections[0]);
  g_px.first_in_section = true;
  return px_page(c);
}

/* A recording listed: fetched with --dir when its file is still there. */
static int want_file(ProtobufCBinaryData rec) {
  json_t *o = json_loadb((const char *)rec.data, rec.len, 0, NULL);
  json_t *id = json_object_get(o, "id");
  bool fetch = json_is_integer(id) && json_integer_value(id) > 0 && !json_is_true(json_object_get(o, "failed")) &&
               json_integer_value(json_object_get(o, "expired_ms")) == 0 &&
               json_integer_value(json_object_get(o, "erased")) == 0 && json_integer_value(json_object_get(o, "size")) > 0;
  uint64_t v = fetch ? (uint64_t)json_integer_value(id) : 0;
  json_decref(o);
  if (!v || g_px.nfiles >= PX_FILES_MAX) return 0;
  uint64_t *g = realloc(g_px.files, (g_px.nfiles + 1) * sizeof(*g));
  if (!g) return TT_ENOMEM;
  g_px.files = g;
  g_px.files[g_px.nfiles++] = v;
  return 0;
}

static int fetch(console_t *c, uint64_t recording, uint64_t offset) {
  Tether__RecordingGetRequest q = TETHER__RECORDING_GET_REQUEST__INIT;
  q.recording = recording;
  q.offset = offset;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_RECORDING_GET;
  r.recording_get = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_RECORDING);
}

static int next_file(console_t *c) {
  if (g_px.next < g_px.nfiles) return fetch(c, g_px.files[g_px.next++], 0);
  fprintf(stderr, "%" PRIu64 " records about %s in %s, and %zu recordings beside it\n", g_px.records, c->arg[0],
          g_px.path, g_px.fetched);
  console_finish(c, 0);
  return 0;
}

/* A chunk of the recording being fetched, straight to DIR/R-n.cast.zst; the whole must hash to
 * the sha256 the broker recorded, or the file is not kept. */
static int px_chunk(console_t *c, const Tether__RecordingChunk *k) {
  if (!g_px.cur) {
    if (k->offset != 0 || k->recording != g_px.files[g_px.next - 1] || k->sha256.len != 32) return TT_EPROTO;
    g_px.cur = k->recording;
    g_px.size = k->size;
    g_px.got = 0;
    memcpy(g_px.sha, k->sha256.data, 32);
    snprintf(g_px.path, sizeof g_px.path, "%.500s/R-%" PRIu64 ".cast.zst", c->cfg.person_dir, k->recording);
    g_px.fd = open(g_px.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (g_px.fd < 0) {
      console_fail(c, "cannot write %s: %s", g_px.path, strerror(errno));
      return 0;
    }
    if (!g_px.md && !(g_px.md = EVP_MD_CTX_new())) return TT_ENOMEM;
    if (EVP_DigestInit_ex(g_px.md, EVP_sha256(), NULL) != 1) return TT_ENOMEM;
  } else if (k->recording != g_px.cur || k->size != g_px.size || k->offset != g_px.got) {
    return TT_EPROTO;
  }
  if (k->data.len > TT_RECORDING_CHUNK_MAX || k->data.len > g_px.size - g_px.got) return TT_EPROTO;
  if (k->data.len == 0 && g_px.got < g_px.size) return TT_EPROTO; /* would ask forever */
  if (k->data.len && (write(g_px.fd, k->data.data, k->data.len) != (ssize_t)k->data.len ||
                      EVP_DigestUpdate(g_px.md, k->data.data, k->data.len) != 1)) {
    console_fail(c, "cannot write %s: %s", g_px.path, strerror(errno));
    return 0;
  }
  g_px.got += k->data.len;
  if (g_px.got < g_px.size) return fetch(c, g_px.cur, g_px.got);
  uint8_t md[32];
  unsigned mdlen = 0;
  if (EVP_DigestFinal_ex(g_px.md, md, &mdlen) != 1 || mdlen != 32 || memcmp(md, g_px.sha, 32) != 0 ||
      fsync(g_px.fd) != 0) {
    console_fail(c, "R-%" PRIu64 ": the file received is not the one recorded (sha256), or could not be kept",
                 g_px.cur);
    return 0;
  }
  close(g_px.fd);
  g_px.fd = -1;
  g_px.cur = 0;
  g_px.fetched++;
  snprintf(g_px.path, sizeof g_px.path, "%.500s", c->cfg.person_dir);
  return next_file(c);
}

static int px_response(console_t *c, const Tether__Response *r) {
  if (r->body_case == TETHER__RESPONSE__BODY_RECORDING) return r->recording ? px_chunk(c, r->recording) : TT_EPROTO;
  const Tether__PersonExportPage *p = r->person_export;
  if (p->section != g_px.section || (p->next < g_px.after && !p->done)) {
    console_fail(c, "the broker answered another part of the export than was asked");
    return 0;
  }
  for (size_t i = 0; i < p->n_records; i++) {
    if (!g_px.first_in_section) fputc(',', g_px.out);
    g_px.first_in_section = false;
    if (!console_json_object(g_px.out, p->records[i])) console_json_bytes(g_px.out, p->records[i]);
    g_px.records++;
    if (c->cfg.person_dir[0] && p->section == SECTION_RECORDINGS) {
      int rc = want_file(p->records[i]);
      if (rc) return rc;
    }
  }
  if (!p->done) {
    if (p->next == g_px.after && p->n_records == 0 && g_px.section != 6) {
      console_fail(c, "the broker's export does not move on");
      return 0;
    }
    g_px.after = p->next;
    return px_page(c);
  }
  fputc(']', g_px.out);
  if (++g_px.section < NSECTIONS) {
    fprintf(g_px.out, ",\"%s\":[", k_sections[g_px.section]);
    g_px.first_in_section = true;
    g_px.after = 0;
    return px_page(c);
  }
  fprintf(g_px.out, "}\n");
  if (fflush(g_px.out) != 0 || ferror(g_px.out) || (g_px.out != stdout && fsync(fileno(g_px.out)) != 0)) {
    console_fail(c, "could not write the export");
    return 0;
  }
  if (!c->cfg.person_dir[0]) {
    fprintf(stderr, "%" PRIu64 " records about %s\n", g_px.records, c->arg[0]);
    console_finish(c, 0);
    return 0;
  }
  return next_file(c);
}

const console_cmd_t console_cmd_person_export = {
    .name = "person",
    .sub = "export",
    .args = "NAME [--dir DIR] (> NAME.json)",
    .help = "admin: everything held about one person (a technician, an admin, or an employee's user name) as one "
            "JSON document: who they are, tickets, events, sessions, recordings, diagnostics, audit entries; "
            "--dir DIR: DIR/NAME.json and the recordings' files beside it",
    .min_pos = 1,
    .max_pos = 1,
    .check = px_check,
    .start = px_start,
    .on_response = px_response,
};

/* ---- tether person erase NAME --reason TEXT [--dry-run] [--json] ----------------------------- */

static int erase_check(console_t *c) {
  int rc = px_check(c);
  if (rc) return rc;
  if (!c->cfg.revoke_reason[0])
    return console_usage_error("--reason is required: why their data is erased (a request's reference)");
  if (!tt_text_valid(tt_text(c->cfg.revoke_reason), TT_TEXT_MAX))
    return console_usage_error("--reason must be one line of printable text, at most %u bytes", TT_TEXT_MAX);
  return 0;
}

static int erase_start(console_t *c) {
  Tether__PersonEraseRequest q = TETHER__PERSON_ERASE_REQUEST__INIT;
  q.name = tt_text(c->arg[0]);
  q.reason = tt_text(c->cfg.revoke_reason);
  q.dry_run = c->args.switches & CONSOLE_SW_DRY_RUN;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_PERSON_ERASE;
  r.person_erase = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_PERSON_ERASE);
}

static int erase_response(console_t *c, const Tether__Response *r) {
  const Tether__PersonEraseResult *v = r->person_erase;
  if (!v || v->n_counts > TT_ERASE_CLASSES_MAX || v->n_held_tickets > TT_ERASE_HELD_MAX) return TT_EPROTO;
  if (c->json) {
    printf("{\"person\":");
    console_json_str(stdout, c->arg[0]);
    printf(",\"pseudonym\":");
    console_json_bytes(stdout, v->pseudonym);
    printf(",\"dry_run\":%s,\"erasure\":%" PRIu64 ",\"released\":%" PRIu64 ",\"counts\":{", v->dry_run ? "true" : "false",
           v->erasure, v->released);
    for (size_t i = 0; i < v->n_counts; i++) {
      if (i) putchar(',');
      console_json_bytes(stdout, v->counts[i]->kind);
      printf(":{\"erased\":%" PRIu64 ",\"held\":%" PRIu64 "}", v->counts[i]->erased, v->counts[i]->held);
    }
    printf("},\"held_tickets\":[");
    for (size_t i = 0; i < v->n_held_tickets; i++) printf("%s\"T-%" PRIu64 "\"", i ? "," : "", v->held_tickets[i]);
    printf("],\"files_deleted\":%u,\"files_failed\":%u,\"scrubbed\":%s}\n", v->files_deleted, v->files_failed,
           v->scrubbed ? "true" : "false");
  } else {
    if (v->dry_run)
      printf("a dry run: nothing was changed. Erasing %s would rewrite, release or delete:\n", c->arg[0]);
    else
      printf("erased %s: their values are now %.*s (audit entry %" PRIu64 ")\n", c->arg[0], (int)v->pseudonym.len,
             (const char *)v->pseudonym.data, v->erasure);
    printf("  %-12s %8s %8s\n", "RECORDS", v->dry_run ? "WOULD GO" : "ERASED", "HELD");
    for (size_t i = 0; i < v->n_counts; i++)
      printf("  %-12.*s %8" PRIu64 " %8" PRIu64 "\n", (int)(v->counts[i]->kind.len > 12 ? 12 : v->counts[i]->kind.len),
             (const char *)v->counts[i]->kind.data, v->counts[i]->erased, v->counts[i]->held);
    printf("  audit values released: %" PRIu64 "\n", v->released);
    if (v->n_held_tickets) {
      printf("on hold, so left as they are:");
      for (size_t i = 0; i < v->n_held_tickets; i++) printf(" T-%" PRIu64, v->held_tickets[i]);
      printf(" (release the hold and erase again)\n");
    }
    if (!v->dry_run) {
      printf("recording files deleted: %u\n", v->files_deleted);
      if (v->files_failed) printf("recording files that could not be deleted: %u (see the broker's log)\n", v->files_failed);
      if (!v->scrubbed) printf("a reader held the store's write-ahead log: old pages go at its next checkpoint\n");
    }
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_person_erase = {
    .name = "person",
    .sub = "erase",
    .args = "NAME --reason TEXT [--dry-run] [--json]",
    .help = "admin: replace a person's name with a pseudonym everywhere, delete their recordings and diagnostics, "
            "release their audit values (verify stays intact); records under a hold are reported, not erased",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_DRY_RUN,
    .check = erase_check,
    .start = erase_start,
    .on_response = erase_response,
};
