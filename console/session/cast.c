/* asciicast v2 for replay and export: a small JSON reader for the header line and the
 * event lines, the pacing of a replay, and the zstd stream around the file. Everything
 * here is a pure function of its input so the tests can drive it with hand-made files. */
#include "cast.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "tt/hex.h"
#include "tt/limits.h"

/* Nesting the header's values may have (its "env" object is one level). */
#define CAST_DEPTH_MAX 16
/* A recorded time past this many seconds (over 300 years) is not a real recording. */
#define CAST_TIME_MAX_S 1e10

typedef struct {
  const char *p, *end;
} scan_t;

static void ws(scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static bool eat(scan_t *s, char ch) {
  ws(s);
  if (s->p >= s->end || *s->p != ch) return false;
  s->p++;
  return true;
}

static int hex4(scan_t *s, uint32_t *v) {
  if (s->end - s->p < 4 || tt_hex_u32(s->p, 4, v) != 0) return TT_EPROTO;
  s->p += 4;
  return 0;
}

/* Append one byte to out if there is room; remember when there was not. */
static void put(uint8_t *out, size_t cap, size_t *len, bool *over, uint8_t b) {
  if (out && *len < cap) out[*len] = b;
  else *over = true;
  (*len)++;
}

static void put_cp(uint8_t *out, size_t cap, size_t *len, bool *over, uint32_t cp) {
  if (cp < 0x80) {
    put(out, cap, len, over, (uint8_t)cp);
  } else if (cp < 0x800) {
    put(out, cap, len, over, (uint8_t)(0xc0 | (cp >> 6)));
    put(out, cap, len, over, (uint8_t)(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    put(out, cap, len, over, (uint8_t)(0xe0 | (cp >> 12)));
    put(out, cap, len, over, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
    put(out, cap, len, over, (uint8_t)(0x80 | (cp & 0x3f)));
  } else {
    put(out, cap, len, over, (uint8_t)(0xf0 | (cp >> 18)));
    put(out, cap, len, over, (uint8_t)(0x80 | ((cp >> 12) & 0x3f)));
    put(out, cap, len, over, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
    put(out, cap, len, over, (uint8_t)(0x80 | (cp & 0x3f)));
  }
}

/* A JSON string, decoded into out (NULL: skipped). *over says it did not fit. Raw bytes
 * are copied as they are: the recorder wrote valid UTF-8 and a terminal gets them anyway.
 * A lone surrogate escape becomes U+FFFD. */
static int string(scan_t *s, uint8_t *out, size_t cap, size_t *len, bool *over) {
  *len = 0;
  *over = false;
  if (!eat(s, '"')) return TT_EPROTO;
  for (;;) {
    if (s->p >= s->end) return TT_EPROTO;
    uint8_t c = (uint8_t)*s->p++;
    if (c == '"') return 0;
    if (c < 0x20) return TT_EPROTO;
    if (c != '\\') {
      put(out, cap, len, over, c);
      continue;
    }
    if (s->p >= s->end) return TT_EPROTO;
    char e = *s->p++;
    uint32_t cp;
    switch (e) {
    case '"': cp = '"'; break;
    case '\\': cp = '\\'; break;
    case '/': cp = '/'; break;
    case 'b': cp = '\b'; break;
    case 'f': cp = '\f'; break;
    case 'n': cp = '\n'; break;
    case 'r': cp = '\r'; break;
    case 't': cp = '\t'; break;
    case 'u':
      if (hex4(s, &cp)) return TT_EPROTO;
      if (cp >= 0xdc00 && cp <= 0xdfff) cp = 0xfffd;
      else if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo;
        scan_t peek = *s;
        if (peek.end - peek.p >= 6 && peek.p[0] == '\\' && peek.p[1] == 'u') {
          peek.p += 2;
          if (hex4(&peek, &lo)) return TT_EPROTO;
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            *s = peek;
          } else cp = 0xfffd;
        } else cp = 0xfffd;
      }
      break;
    default: return TT_EPROTO;
    }
    put_cp(out, cap, len, over, cp);
  }
}

/* A JSON number as a double. */
static int number(scan_t *s, double *v) {
  char tmp[64];
  ws(s);
  const char *b = s->p;
  if (s->p < s->end && *s->p == '-') s->p++;
  if (s->p >= s->end || *s->p < '0' || *s->p > '9') return TT_EPROTO;
  while (s->p < s->end && ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' || *s->p == 'E' ||
                           *s->p == '+' || *s->p == '-'))
    s->p++;
  size_t n = (size_t)(s->p - b);
  if (n >= sizeof(tmp)) return TT_EPROTO;
  memcpy(tmp, b, n);
  tmp[n] = '\0';
  char *endp;
  *v = strtod(tmp, &endp);
  if (endp != tmp + n || !isfinite(*v)) return TT_EPROTO;
  return 0;
}

static int value_skip(scan_t *s, int depth);

static int container_skip(scan_t *s, char close, bool object, int depth) {
  size_t len;
  bool over;
  if (depth > CAST_DEPTH_MAX) return TT_EPROTO;
  if (eat(s, close)) return 0;
  for (;;) {
    if (object) {
      if (string(s, NULL, 0, &len, &over) || !eat(s, ':')) return TT_EPROTO;
    }
    if (value_skip(s, depth)) return TT_EPROTO;
    if (eat(s, close)) return 0;
    if (!eat(s, ',')) return TT_EPROTO;
  }
}

static int word(scan_t *s, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return TT_EPROTO;
  s->p += n;
  return 0;
}

static int value_skip(scan_t *s, int depth) {
  size_t len;
  bool over;
  double d;
  ws(s);
  if (s->p >= s->end) return TT_EPROTO;
  switch (*s->p) {
  case '{': s->p++; return container_skip(s, '}', true, depth + 1);
  case '[': s->p++; return container_skip(s, ']', false, depth + 1);
  case '"': return string(s, NULL, 0, &len, &over);
  case 't': return word(s, "true");
  case 'f': return word(s, "false");
  case 'n': return word(s, "null");
  default: return number(s, &d);
  }
}

static bool at_end(scan_t *s) {
  ws(s);
  return s->p == s->end;
}

static int uint_field(scan_t *s, uint64_t max, uint64_t *out) {
  double d;
  if (number(s, &d) || d < 0 || d > (double)max || d != floor(d)) return TT_EPROTO;
  *out = (uint64_t)d;
  return 0;
}

int cast_header_parse(const char *line, size_t n, cast_header_t *h) {
  scan_t s = {line, line + n};
  uint8_t key[16];
  size_t klen;
  bool over;
  uint64_t v;
  memset(h, 0, sizeof(*h));
  if (!eat(&s, '{')) return TT_EPROTO;
  if (!eat(&s, '}')) {
    for (;;) {
      if (string(&s, key, sizeof(key), &klen, &over) || !eat(&s, ':')) return TT_EPROTO;
      bool known = !over;
#define KEY(k) (known && klen == strlen(k) && memcmp(key, k, klen) == 0)
      if (KEY("version")) {
        if (uint_field(&s, 1000, &v)) return TT_EPROTO;
        h->version = (uint32_t)v;
      } else if (KEY("width")) {
        if (uint_field(&s, TT_TERM_DIM_MAX, &v)) return TT_EPROTO;
        h->width = (uint32_t)v;
      } else if (KEY("height")) {
        if (uint_field(&s, TT_TERM_DIM_MAX, &v)) return TT_EPROTO;
        h->height = (uint32_t)v;
      } else if (KEY("timestamp")) {
        double ts; /* some writers give a fraction: the seconds are enough */
        if (number(&s, &ts) || ts < 0 || ts > CAST_TIME_MAX_S) return TT_EPROTO;
        h->timestamp = (uint64_t)ts;
      } else if (value_skip(&s, 1)) {
        return TT_EPROTO;
      }
#undef KEY
      if (eat(&s, '}')) break;
      if (!eat(&s, ',')) return TT_EPROTO;
    }
  }
  if (!at_end(&s) || h->version != 2 || !h->width || !h->height) return TT_EPROTO;
  return 0;
}

int cast_event_parse(const char *line, size_t n, cast_event_t *ev, uint8_t *buf, size_t cap) {
  scan_t s = {line, line + n};
  uint8_t type[8];
  size_t tlen;
  bool over;
  double t;
  memset(ev, 0, sizeof(*ev));
  if (!eat(&s, '[') || number(&s, &t) || t < 0 || t > CAST_TIME_MAX_S || !eat(&s, ',')) return TT_EPROTO;
  if (string(&s, type, sizeof(type), &tlen, &over) || over || tlen != 1 || !eat(&s, ',')) return TT_EPROTO;
  if (string(&s, buf, cap, &ev->len, &over) || over) return TT_EPROTO;
  if (!eat(&s, ']') || !at_end(&s)) return TT_EPROTO;
  ev->t_us = (uint64_t)llround(t * 1e6);
  ev->type = (char)type[0];
  ev->data = buf;
  return 0;
}

uint64_t cast_delay_us(uint64_t prev_us, uint64_t t_us, double speed, uint64_t idle_max_us) {
  if (t_us <= prev_us || !(speed > 0)) return 0;
  uint64_t d = t_us - prev_us;
  if (idle_max_us && d > idle_max_us) d = idle_max_us;
  double w = (double)d / speed;
  return w >= 1e15 ? (uint64_t)1e15 : (uint64_t)w;
}

void cast_player_init(cast_player_t *p, double speed, uint64_t idle_max_us, cast_output_cb cb, void *ctx) {
  memset(p, 0, sizeof(*p));
  p->speed = speed;
  p->idle_max_us = idle_max_us;
  p->on_output = cb;
  p->ctx = ctx;
}

void cast_player_free(cast_player_t *p) {
  free(p->line);
  free(p->text);
  p->line = NULL;
  p->text = NULL;
  p->len = p->cap = 0;
}

static int play_line(cast_player_t *p, const char *l, size_t n) {
  p->lineno++;
  if (n && l[n - 1] == '\r') n--;
  bool blank = true;
  for (size_t i = 0; i < n && blank; i++) blank = l[i] == ' ' || l[i] == '\t';
  if (blank) return 0;
  if (!p->have_header) {
    if (cast_header_parse(l, n, &p->header)) return TT_EPROTO;
    p->have_header = true;
    return 0;
  }
  /* The decoded text is never longer than its line. */
  uint8_t *text = realloc(p->text, n ? n : 1);
  if (!text) return TT_ENOMEM;
  p->text = text;
  cast_event_t ev;
  if (cast_event_parse(l, n, &ev, p->text, n)) return TT_EPROTO;
  if (ev.type != 'o') return 0;
  uint64_t delay = cast_delay_us(p->prev_us, ev.t_us, p->speed, p->idle_max_us);
  if (ev.t_us > p->prev_us) p->prev_us = ev.t_us;
  return p->on_output(p->ctx, ev.data, ev.len, delay);
}

static int line_append(cast_player_t *p, const uint8_t *d, size_t n) {
  if (p->len + n > CAST_LINE_MAX) return TT_ETOOBIG;
  if (p->len + n > p->cap) {
    size_t cap = p->cap ? p->cap : 4096;
    while (cap < p->len + n) cap *= 2;
    if (cap > CAST_LINE_MAX) cap = CAST_LINE_MAX;
    char *l = realloc(p->line, cap);
    if (!l) return TT_ENOMEM;
    p->line = l;
    p->cap = cap;
  }
  memcpy(p->line + p->len, d, n);
  p->len += n;
  return 0;
}

int cast_player_feed(cast_player_t *p, const uint8_t *data, size_t n) {
  while (n > 0) {
    const uint8_t *nl = memchr(data, '\n', n);
    size_t take = nl ? (size_t)(nl - data) : n;
    int rc;
    if (!nl) return line_append(p, data, take);
    if (p->len == 0) {
      /* The whole line is here: play it without copying. */
      if (take > CAST_LINE_MAX) return TT_ETOOBIG;
      rc = play_line(p, (const char *)data, take);
    } else {
      rc = line_append(p, data, take);
      if (!rc) rc = play_line(p, p->line, p->len);
      p->len = 0;
    }
    if (rc) return rc;
    data += take + 1;
    n -= take + 1;
  }
  return 0;
}

int cast_player_end(cast_player_t *p) {
  if (p->len) {
    int rc = play_line(p, p->line, p->len);
    p->len = 0;
    if (rc) return rc;
  }
  return p->have_header ? 0 : TT_EPROTO;
}

#define CAST_ZSTD_WINDOW_LOG_MAX 23

int cast_unzstd(const uint8_t *in, size_t n, cast_bytes_cb out, void *ctx) {
  ZSTD_DCtx *d = ZSTD_createDCtx();
  uint8_t *buf = malloc(CAST_UNZSTD_OUT);
  int rc = 0;
  size_t ret = 1; /* 0 once a frame is complete and flushed */
  if (!d || !buf) {
    rc = TT_ENOMEM;
    goto out;
  }
  /* The recorder's frames need a 2 MiB window (level 3); a frame asking for more than 8 MiB
   * is not one of ours and must not make us allocate for it. */
  if (ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, CAST_ZSTD_WINDOW_LOG_MAX))) {
    rc = TT_EZSTD;
    goto out;
  }
  if (n == 0) {
    rc = TT_EPROTO;
    goto out;
  }
  ZSTD_inBuffer ib = {in, n, 0};
  for (;;) {
    ZSTD_outBuffer ob = {buf, CAST_UNZSTD_OUT, 0};
    ret = ZSTD_decompressStream(d, &ob, &ib);
    if (ZSTD_isError(ret)) {
      rc = TT_EZSTD;
      goto out;
    }
    if (ob.pos && (rc = out(ctx, buf, ob.pos))) goto out;
    /* Done when the input is used up and the last call had room to spare (nothing left
     * inside the decoder). */
    if (ib.pos == ib.size && ob.pos < ob.size) break;
  }
  if (ret != 0) rc = TT_EPROTO;
out:
  ZSTD_freeDCtx(d);
  free(buf);
  return rc;
}
