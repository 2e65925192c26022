/* The progress block on a terminal: a line per file moving and one for the whole transfer
 * (bytes, rate, ETA), redrawn in place. Rendering is pure (tests call it with a clock of
 * their own); drawing moves the cursor back over the lines drawn before. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "files.h"

/* The rate is smoothed over about this long, so that the ETA does not jump with every
 * chunk, yet follows a link that slows down within a few seconds. */
#define RATE_TAU_S 2.0
/* Under this, a tick is too short to measure a rate from. */
#define RATE_MIN_DT_NS 50000000ull
/* Beyond 99:59:59 an ETA says nothing. */
#define ETA_MAX_S 359999.0
/* A bar where the terminal leaves this much room for the name beside it. */
#define BAR_ROOM_MIN 40u
#define BAR_WIDTH 20u
/* Figures are dropped, rate first, before a name gets narrower than this. */
#define NAME_MIN 12u

void progress_init(progress_t *p, uint64_t now_ns) {
  memset(p, 0, sizeof(*p));
  p->t0_ns = p->last_ns = now_ns;
}

void progress_tick(progress_t *p, uint64_t now_ns) {
  if (now_ns < p->last_ns + RATE_MIN_DT_NS) return;
  double dt = (double)(now_ns - p->last_ns) / 1e9;
  double inst = (double)(p->moved - p->last_moved) / dt;
  double a = 1.0 - exp(-dt / RATE_TAU_S);
  p->rate = p->rate <= 0 ? inst : p->rate + a * (inst - p->rate);
  p->last_ns = now_ns;
  p->last_moved = p->moved;
}

void progress_bytes(char *out, size_t cap, uint64_t n) {
  static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (n < 1024) {
    snprintf(out, cap, "%u B", (unsigned)n);
    return;
  }
  double v = (double)n / 1024.0;
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
    v /= 1024.0;
    u++;
  }
  snprintf(out, cap, "%.1f %s", v, units[u]);
}

void progress_eta(char *out, size_t cap, double s) {
  if (!(s >= 0) || s > ETA_MAX_S) {
    snprintf(out, cap, "--:--");
    return;
  }
  unsigned t = (unsigned)ceil(s);
  if (t < 3600) snprintf(out, cap, "%u:%02u", t / 60, t % 60);
  else snprintf(out, cap, "%u:%02u:%02u", t / 3600, (t / 60) % 60, t % 60);
}

/* Characters (code points) in UTF-8 text. */
static unsigned chars(const char *s) {
  unsigned n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xc0) != 0x80) n++;
  return n;
}

void progress_fit(char *out, size_t cap, const char *s, unsigned width) {
  if (cap == 0) return;
  unsigned n = chars(s);
  const char *from = s;
  const char *lead = "";
  if (n > width) {
    unsigned keep = width > 3 ? width - 3 : width, skip = n - keep;
    lead = width > 3 ? "..." : "";
    while (skip > 0) { /* to the start of the character after the ones dropped */
      from++;
      while (((unsigned char)*from & 0xc0) == 0x80) from++;
      skip--;
    }
  }
  snprintf(out, cap, "%s%s", lead, from);
}

/* Cut a line to width characters from its end. */
static void cut_tail(char *s, unsigned width) {
  unsigned n = 0;
  for (char *q = s; *q; q++) {
    if (((unsigned char)*q & 0xc0) == 0x80) continue;
    if (n++ == width) {
      *q = '\0';
      return;
    }
  }
}

static unsigned percent(uint64_t done, uint64_t total) {
  if (total == 0) return 100;
  if (done >= total) return 100;
  return (unsigned)((double)done * 100.0 / (double)total);
}

/* The figures of a line, as many as the width allows: level 0 "12.3 MiB / 40.0 MiB  31%
 * 85.2 MiB/s  0:01", level 1 without the rate, level 2 the percentage and ETA only. */
static void figures(char *out, size_t cap, int level, uint64_t done, uint64_t total, bool total_known, double rate) {
  char d[24], t[24], r[24], e[24], pct[8];
  progress_bytes(d, sizeof(d), done);
  if (total_known) {
    progress_bytes(t, sizeof(t), total);
    snprintf(pct, sizeof(pct), "%3u%%", percent(done, total));
  } else {
    snprintf(t, sizeof(t), "?");
    snprintf(pct, sizeof(pct), "   ?");
  }
  if (rate > 0) {
    progress_bytes(r, sizeof(r), (uint64_t)rate);
    strcat(r, "/s");
  } else {
    snprintf(r, sizeof(r), "-");
  }
  progress_eta(e, sizeof(e), total_known && rate > 0 ? (double)(total > done ? total - done : 0) / rate : -1);
  if (level == 0) snprintf(out, cap, "%10s / %-10s %s %12s %8s", d, t, pct, r, e);
  else if (level == 1) snprintf(out, cap, "%10s / %-10s %s %8s", d, t, pct, e);
  else snprintf(out, cap, "%s %8s", pct, e);
}

static void bar(char *out, uint64_t done, uint64_t total) {
  unsigned fill = (unsigned)((uint64_t)percent(done, total) * BAR_WIDTH / 100u);
  out[0] = '[';
  for (unsigned i = 0; i < BAR_WIDTH; i++) out[1 + i] = i < fill ? '#' : '.';
  out[BAR_WIDTH + 1] = ']';
  out[BAR_WIDTH + 2] = '\0';
}

/* name, padded to width characters, then the bar (when there is room) and the figures. */
static void line(char *out, size_t cap, const char *name, uint64_t done, uint64_t total, bool total_known,
                 double rate, unsigned cols) {
  char fig[128], fitted[PROGRESS_COLS_MAX * 4 + 8], b[BAR_WIDTH + 3] = "";
  for (int level = 0; level < 3; level++) { /* drop figures before the name gets too short */
    figures(fig, sizeof(fig), level, done, total, total_known, rate);
    if (cols >= strlen(fig) + 2 + NAME_MIN) break;
  }
  unsigned fixed = (unsigned)strlen(fig) + 1;
  unsigned room = cols > fixed + 8 ? cols - 1 - fixed : 8;
  if (room >= BAR_ROOM_MIN && total_known) {
    bar(b, done, total);
    room -= BAR_WIDTH + 3;
  }
  progress_fit(fitted, sizeof(fitted), name, room);
  unsigned pad = room - chars(fitted);
  snprintf(out, cap, "%s%*s %s%s%s", fitted, (int)pad, "", b, b[0] ? " " : "", fig);
  cut_tail(out, cols > 1 ? cols - 1 : 1);
}

unsigned progress_render(const progress_t *p, const progress_file_t *f, size_t nf, size_t moving, uint64_t now_ns,
                         unsigned cols, char *out, size_t cap) {
  char one[PROGRESS_COLS_MAX * 4 + 256], name[64];
  size_t used = 0;
  unsigned lines = 0;
  if (cols > PROGRESS_COLS_MAX) cols = PROGRESS_COLS_MAX;
  if (cols < 20) cols = 20;
  if (cap) out[0] = '\0';
  size_t shown = nf < PROGRESS_FILES_SHOWN ? nf : PROGRESS_FILES_SHOWN;
  for (size_t i = 0; i < shown; i++) {
    double secs = now_ns > f[i].t0_ns ? (double)(now_ns - f[i].t0_ns) / 1e9 : 0;
    double rate = secs > 0 ? (double)(f[i].done > f[i].resumed ? f[i].done - f[i].resumed : 0) / secs : 0;
    line(one, sizeof(one), f[i].name, f[i].done, f[i].total, true, rate, cols);
    used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s\n", one);
    if (used >= cap) return lines;
    lines++;
  }
  if (moving > shown)
    snprintf(name, sizeof(name), "%llu/%llu files, %zu more moving", (unsigned long long)p->files_done,
             (unsigned long long)p->files_total, moving - shown);
  else
    snprintf(name, sizeof(name), "%llu/%llu files", (unsigned long long)p->files_done,
             (unsigned long long)p->files_total);
  line(one, sizeof(one), name, p->bytes_done, p->bytes_total, p->unknown == 0, p->rate, cols);
  used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s", one);
  if (used >= cap) return lines;
  return lines + 1;
}

void progress_draw(progress_t *p, FILE *out, const progress_file_t *f, size_t nf, size_t moving, uint64_t now_ns,
                   unsigned cols) {
  static char block[PROGRESS_BUF];
  char *o;
  size_t cap = sizeof(block) + (PROGRESS_FILES_SHOWN + 1) * 16 + 32;
  char buf[sizeof(block) + (PROGRESS_FILES_SHOWN + 1) * 16 + 32];
  unsigned lines = progress_render(p, f, nf, moving, now_ns, cols, block, sizeof(block));
  size_t n = 0;
  if (p->drawn) n += (size_t)snprintf(buf + n, cap - n, "\033[%uA", p->drawn);
  /* Each line from column 0, cleared after it; the cursor ends below the block. */
  o = block;
  for (unsigned i = 0; i < lines && n < cap; i++) {
    char *nl = strchr(o, '\n');
    size_t len = nl ? (size_t)(nl - o) : strlen(o);
    n += (size_t)snprintf(buf + n, cap - n, "\r%.*s\033[K\n", (int)len, o);
    o = nl ? nl + 1 : o + len;
  }
  if (lines < p->drawn && n < cap) n += (size_t)snprintf(buf + n, cap - n, "\033[J");
  if (n > cap) n = cap;
  fwrite(buf, 1, n, out);
  fflush(out);
  p->drawn = lines;
}

void progress_clear(progress_t *p, FILE *out) {
  if (!p->drawn) return;
  fprintf(out, "\033[%uA\r\033[J", p->drawn);
  fflush(out);
  p->drawn = 0;
}
