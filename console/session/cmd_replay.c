/* tether replay S-5|R-7 [--speed N] [--idle-max 2s]: play a shell recording on the
 * terminal at its own pace. tether recording export S-5|R-7 [--index N]: the .cast file
 * itself on stdout, for asciinema. Both fetch the compressed file in chunks, check its
 * sha256 against the one the broker recorded (and audited), and only then decompress: a
 * file that does not match is never shown. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>
#include "cast.h"
#include "console.h"
#include "tt/hex.h"
#include "tt/msg.h"

/* What the console holds in memory: one recording's compressed file, and all of a
 * session's together (a day of busy shell compresses to far less). */
#define RECORDING_MAX (1ull << 30)
#define RECORDINGS_TOTAL_MAX (2ull << 30)
/* Recordings one session may list (one per shell opened in it). */
#define RECORDINGS_PER_SESSION_MAX 100000u
#define SHA256_LEN 32u
#define SPEED_MAX 1000.0

typedef struct {
  uint64_t id;
  uint8_t *data;
  uint64_t size;
} rec_file_t;

typedef struct {
  bool by_session;
  uint64_t target;       /* session or recording id */
  uint32_t index;        /* export: which of the session's */
  double speed;
  bool export_only;
  /* the queue of recordings still to fetch, from the first answer */
  uint64_t *queue;
  size_t nqueue, next;
  /* the one being fetched (want: the id asked for, 0 = the session's at index) */
  uint64_t want, cur, size, got;
  uint8_t sha[SHA256_LEN];
  uint8_t *data;
  /* the ones fetched and checked */
  rec_file_t *files;
  size_t nfiles;
  uint64_t total;
} replay_state_t;

static replay_state_t g_rp;

static void replay_discard(void) {
  for (size_t i = 0; i < g_rp.nfiles; i++) free(g_rp.files[i].data);
  free(g_rp.files);
  free(g_rp.queue);
  free(g_rp.data);
  memset(&g_rp, 0, sizeof(g_rp));
}

static int target_parse(const char *s) {
  if (!console_parse_id(s, 'S', true, &g_rp.target)) {
    g_rp.by_session = true;
    return 0;
  }
  if (!console_parse_id(s, 'R', true, &g_rp.target)) return 0;
  return console_usage_error("'%s' is neither a session (S-5) nor a recording (R-7)", s);
}

static int replay_check(console_t *c) {
  if (target_parse(c->arg[0])) return 2;
  char *end;
  errno = 0;
  g_rp.speed = strtod(c->cfg.speed, &end);
  if (errno || *end || !isfinite(g_rp.speed) || g_rp.speed < 0 || g_rp.speed > SPEED_MAX)
    return console_usage_error("--speed: want a number from 0 (no waiting) to %.0f", SPEED_MAX);
  return 0;
}

static int export_check(console_t *c) {
  if (target_parse(c->arg[0])) return 2;
  if (!g_rp.by_session && c->cfg.index)
    return console_usage_error("--index picks one of a session's recordings: give S-n, not R-n");
  g_rp.index = (uint32_t)c->cfg.index;
  g_rp.export_only = true;
  return 0;
}

static int fetch(console_t *c, uint64_t recording, uint64_t offset) {
  Tether__RecordingGetRequest q = TETHER__RECORDING_GET_REQUEST__INIT;
  if (recording) q.recording = recording;
  else {
    q.session = g_rp.target;
    q.index = g_rp.index;
  }
  q.offset = offset;
  g_rp.want = recording;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_RECORDING_GET;
  r.recording_get = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_RECORDING);
}

static int replay_start(console_t *c) {
  c->state = &g_rp;
  atexit(replay_discard);
  return fetch(c, g_rp.by_session ? 0 : g_rp.target, 0);
}

/* The first answer names the recording and, for a session replay, every one to play. */
static int first_chunk(console_t *c, const Tether__RecordingChunk *k) {
  if (!k->recording || (g_rp.want && k->recording != g_rp.want)) return TT_EPROTO;
  if (g_rp.by_session && k->session != g_rp.target) return TT_EPROTO;
  if (g_rp.nqueue == 0) {
    if (g_rp.by_session && !g_rp.export_only) {
      if (k->n_session_recordings == 0 || k->n_session_recordings > RECORDINGS_PER_SESSION_MAX) return TT_EPROTO;
      g_rp.queue = malloc(k->n_session_recordings * sizeof(uint64_t));
      if (!g_rp.queue) return TT_ENOMEM;
      memcpy(g_rp.queue, k->session_recordings, k->n_session_recordings * sizeof(uint64_t));
      g_rp.nqueue = k->n_session_recordings;
      if (g_rp.queue[0] != k->recording) return TT_EPROTO;
    } else {
      g_rp.queue = malloc(sizeof(uint64_t));
      if (!g_rp.queue) return TT_ENOMEM;
      g_rp.queue[0] = k->recording;
      g_rp.nqueue = 1;
    }
    g_rp.next = 1;
  }
  if (k->sha256.len != SHA256_LEN) return TT_EPROTO;
  if (k->size > RECORDING_MAX || g_rp.total + k->size > RECORDINGS_TOTAL_MAX) {
    console_fail(c, "R-%" PRIu64 " is %" PRIu64 " bytes: more than this console holds (%llu)", k->recording,
                 k->size, (unsigned long long)RECORDING_MAX);
    return 0;
  }
  g_rp.cur = k->recording;
  g_rp.size = k->size;
  g_rp.got = 0;
  memcpy(g_rp.sha, k->sha256.data, SHA256_LEN);
  g_rp.data = malloc(k->size ? k->size : 1);
  return g_rp.data ? 0 : TT_ENOMEM;
}

/* The whole file is here: it must be the one the broker recorded. */
static int file_done(console_t *c) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (!EVP_Digest(g_rp.data, (size_t)g_rp.size, md, &mdlen, EVP_sha256(), NULL) || mdlen != SHA256_LEN)
    return TT_ENOMEM;
  if (memcmp(md, g_rp.sha, SHA256_LEN) != 0) {
    char want[TT_HEX_CAP(SHA256_LEN)], got[TT_HEX_CAP(SHA256_LEN)];
    tt_hex(want, sizeof(want), g_rp.sha, SHA256_LEN);
    tt_hex(got, sizeof(got), md, SHA256_LEN);
    console_fail(c, "R-%" PRIu64 ": sha256 mismatch: the file received is not the one recorded "
                    "(recorded %s, received %s)", g_rp.cur, want, got);
    return 0;
  }
  rec_file_t *f = realloc(g_rp.files, (g_rp.nfiles + 1) * sizeof(*f));
  if (!f) return TT_ENOMEM;
  g_rp.files = f;
  g_rp.files[g_rp.nfiles++] = (rec_file_t){g_rp.cur, g_rp.data, g_rp.size};
  g_rp.total += g_rp.size;
  g_rp.data = NULL;
  g_rp.cur = 0;
  if (g_rp.next < g_rp.nqueue) return fetch(c, g_rp.queue[g_rp.next++], 0);
  console_finish(c, 0); /* played after the connection closed: see replay_after */
  return 0;
}

static int replay_response(console_t *c, const Tether__Response *r) {
  const Tether__RecordingChunk *k = r->recording;
  if (!k) return TT_EPROTO;
  if (!g_rp.cur) {
    if (k->offset != 0) return TT_EPROTO;
    int rc = first_chunk(c, k);
    if (rc || c->done) return rc;
  } else if (k->recording != g_rp.cur || k->size != g_rp.size || k->offset != g_rp.got) {
    return TT_EPROTO;
  }
  if (k->data.len > TT_RECORDING_CHUNK_MAX || k->data.len > g_rp.size - g_rp.got) return TT_EPROTO;
  if (k->data.len == 0 && g_rp.got < g_rp.size) return TT_EPROTO; /* would ask forever */
  if (k->data.len) memcpy(g_rp.data + g_rp.got, k->data.data, k->data.len);
  g_rp.got += k->data.len;
  if (g_rp.got == g_rp.size) return file_done(c);
  return fetch(c, g_rp.cur, g_rp.got);
}

/* -- after the connection: play or export ---------------------------------------------- */

static int write_out(const uint8_t *p, size_t n) {
  if (n && fwrite(p, 1, n, stdout) != n) return TT_EIO;
  return 0;
}

static int export_bytes(void *ctx, const uint8_t *p, size_t n) {
  (void)ctx;
  return write_out(p, n);
}

static void sleep_us(uint64_t us) {
  struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int play_output(void *ctx, const uint8_t *p, size_t n, uint64_t delay_us) {
  (void)ctx;
  if (delay_us) {
    if (fflush(stdout) != 0) return TT_EIO;
    sleep_us(delay_us);
  }
  return write_out(p, n);
}

typedef struct {
  cast_player_t pl;
  int rc; /* the player's own error, told apart from the decompressor's */
} play_t;

static int play_bytes(void *ctx, const uint8_t *p, size_t n) {
  play_t *pt = ctx;
  pt->rc = cast_player_feed(&pt->pl, p, n);
  return pt->rc;
}

static int play_file(console_t *c, const rec_file_t *f) {
  play_t pt = {.rc = 0};
  cast_player_init(&pt.pl, g_rp.speed, (uint64_t)c->cfg.idle_max_ms * 1000u, play_output, NULL);
  int rc = cast_unzstd(f->data, (size_t)f->size, play_bytes, &pt);
  if (!rc) rc = pt.rc = cast_player_end(&pt.pl);
  uint64_t line = cast_player_line(&pt.pl);
  cast_player_free(&pt.pl);
  if (rc == TT_EIO) return rc;
  if (pt.rc == TT_EPROTO)
    fprintf(stderr, "tether: R-%" PRIu64 ": not an asciicast v2 recording (line %" PRIu64 ")\n", f->id,
            line);
  else if (rc == TT_EPROTO)
    fprintf(stderr, "\r\ntether: R-%" PRIu64 " stops in the middle: the recording did not finish\n", f->id);
  else if (rc)
    fprintf(stderr, "tether: R-%" PRIu64 ": %s\n", f->id, tt_strerror(rc));
  return rc;
}

/* What a recording may have switched on (alternate screen, hidden cursor, mouse reporting,
 * bracketed paste, colours) is switched off after playback, and on ^C during it: the
 * technician's terminal is theirs again. */
static const char k_term_reset[] = "\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1006l\x1b[?2004l\x1b[0m";

static void replay_signal(int sig) {
  (void)!write(STDOUT_FILENO, k_term_reset, sizeof(k_term_reset) - 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

static int replay_after(console_t *c) {
  int rc = 0;
  bool tty = !g_rp.export_only && isatty(STDOUT_FILENO);
  if (tty) {
    signal(SIGINT, replay_signal);
    signal(SIGTERM, replay_signal);
  }
  for (size_t i = 0; i < g_rp.nfiles && !rc; i++) {
    if (g_rp.export_only) {
      rc = cast_unzstd(g_rp.files[i].data, (size_t)g_rp.files[i].size, export_bytes, NULL);
      if (rc == TT_EPROTO)
        fprintf(stderr, "tether: R-%" PRIu64 " stops in the middle: the recording did not finish\n",
                g_rp.files[i].id);
      else if (rc && rc != TT_EIO)
        fprintf(stderr, "tether: R-%" PRIu64 ": cannot decompress: %s\n", g_rp.files[i].id, tt_strerror(rc));
    } else {
      rc = play_file(c, &g_rp.files[i]);
    }
  }
  if (tty) fputs(k_term_reset, stdout);
  if (fflush(stdout) != 0) rc = rc ? rc : TT_EIO;
  if (rc == TT_EIO) fprintf(stderr, "tether: cannot write to stdout: %s\n", strerror(errno));
  replay_discard();
  return rc ? 1 : 0;
}

const console_cmd_t console_cmd_replay = {
    .name = "replay",
    .args = "S-5|R-7 [--speed N] [--idle-max 2s]",
    .help = "play a session's shell recordings (or one) on this terminal",
    .min_pos = 1,
    .max_pos = 1,
    .check = replay_check,
    .start = replay_start,
    .on_response = replay_response,
    .after = replay_after,
};

const console_cmd_t console_cmd_recording_export = {
    .name = "recording",
    .sub = "export",
    .args = "S-5|R-7 [--index N]",
    .help = "write a recording as an asciicast v2 file to stdout (asciinema play/cat read it)",
    .min_pos = 1,
    .max_pos = 1,
    .check = export_check,
    .start = replay_start,
    .on_response = replay_response,
    .after = replay_after,
};
