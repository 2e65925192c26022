/* `tether-agent prompt|sessions|end`: the employee's side of consent, as clients of the
 * running agent's local socket (consent.c speaks the line protocol). Plain blocking I/O:
 * one socket, standard input, nothing else. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "agent.h"
#include "tt/msg.h"

typedef struct {
  int fd;
  size_t len;
  char buf[TT_LOCAL_LINE_MAX * 2 + 1];
} conn_t;

static int local_connect(const agent_cfg_t *cfg, conn_t *c) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memset(c, 0, sizeof(*c));
  if (strlen(cfg->consent_socket) >= sizeof(sa.sun_path)) {
    fprintf(stderr, "tether-agent: consent.socket is too long\n");
    return -1;
  }
  memcpy(sa.sun_path, cfg->consent_socket, strlen(cfg->consent_socket));
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa))) {
    fprintf(stderr, "tether-agent: cannot reach the agent at %s: %s (is it running?)\n", cfg->consent_socket,
            strerror(errno));
    if (c->fd >= 0) close(c->fd);
    return -1;
  }
  return 0;
}

static int say(conn_t *c, const char *line) {
  char out[TT_LOCAL_LINE_MAX + 2];
  int n = snprintf(out, sizeof(out), "%s\n", line);
  if (n < 0 || (size_t)n >= sizeof(out)) return -1;
  for (size_t off = 0; off < (size_t)n;) {
    ssize_t w = send(c->fd, out + off, (size_t)n - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    off += (size_t)w;
  }
  return 0;
}

/* The next line from the agent into out (no LF); 1 = got one, 0 = the agent closed, -1 = error. */
static int next_line(conn_t *c, char *out, size_t cap) {
  for (;;) {
    char *nl = memchr(c->buf, '\n', c->len);
    if (nl) {
      size_t n = (size_t)(nl - c->buf);
      snprintf(out, cap, "%.*s", (int)n, c->buf);
      memmove(c->buf, nl + 1, c->len - n - 1);
      c->len -= n + 1;
      return 1;
    }
    if (c->len >= sizeof(c->buf) - 1) return -1; /* longer than any line the agent sends */
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r == 0 ? 0 : -1;
    c->len += (size_t)r;
  }
}

/* Split a line's TAB-separated fields in place (after "WORD "). */
static size_t fields(char *s, char **f, size_t max) {
  size_t n = 0;
  while (n < max) {
    f[n++] = s;
    char *t = strchr(s, '\t');
    if (!t) break;
    *t = '\0';
    s = t + 1;
  }
  return n;
}

static void fmt_duration(char *out, size_t cap, unsigned long long s) {
  if (s >= 3600 && s % 3600 == 0) snprintf(out, cap, "%llu h", s / 3600);
  else if (s >= 60) snprintf(out, cap, "%llu min", (s + 59) / 60);
  else snprintf(out, cap, "%llu s", s);
}

/* ---- sessions, end ----------------------------------------------------------------------- */

int agent_local_sessions(const agent_cfg_t *cfg) {
  conn_t c;
  char line[TT_LOCAL_LINE_MAX * 2 + 1];
  if (local_connect(cfg, &c)) return 1;
  int rc = 1, n = 0;
  if (say(&c, "SESSIONS")) goto lost;
  for (;;) {
    int r = next_line(&c, line, sizeof(line));
    if (r <= 0) goto lost;
    if (strcmp(line, "OK") == 0) break;
    if (strncmp(line, "ERR ", 4) == 0) {
      fprintf(stderr, "tether-agent: %s\n", line + 4);
      goto out;
    }
    if (strncmp(line, "SESSION ", 8) != 0) continue;
    char *f[7];
    if (fields(line + 8, f, 7) != 7) continue;
    char until[32];
    agent_fmt_time(until, sizeof(until), strtoll(f[4], NULL, 10) * 1000);
    if (n++ == 0) printf("%-8s %-16s %-8s %-16s %-20s %-10s %s\n", "SESSION", "TECHNICIAN", "TICKET", "ACCESS",
                         "UNTIL", "CONSENT", "SUMMARY");
    printf("%-8s %-16s %-8s %-16s %-20s %-10s %s\n", f[0], f[1], f[2], f[3], until, f[5], f[6]);
  }
  if (n == 0) printf("no support sessions on this device\n");
  rc = 0;
  goto out;
lost:
  fprintf(stderr, "tether-agent: the agent closed the connection\n");
out:
  close(c.fd);
  return rc;
}

int agent_local_end(const agent_cfg_t *cfg, const char *session) {
  conn_t c;
  char line[TT_LOCAL_LINE_MAX * 2 + 1];
  if (!agent_parse_id(session, 'S')) {
    fprintf(stderr, "tether-agent: not a session: %s (S-4 or 4)\n", session);
    return 2;
  }
  if (local_connect(cfg, &c)) return 1;
  snprintf(line, sizeof(line), "END S-%llu", (unsigned long long)agent_parse_id(session, 'S'));
  int rc = 1;
  if (say(&c, line) || next_line(&c, line, sizeof(line)) <= 0) {
    fprintf(stderr, "tether-agent: the agent closed the connection\n");
  } else if (strcmp(line, "OK") == 0) {
    rc = 0;
  } else {
    fprintf(stderr, "tether-agent: %s\n", strncmp(line, "ERR ", 4) == 0 ? line + 4 : line);
  }
  close(c.fd);
  return rc;
}

/* ---- ask, tickets, comment: the employee's help requests (help.c) ------------------------- */

/* The agent answers an ask once the snapshot is taken and the broker has answered (or 30 s
 * passed: then it keeps the request); this is ample for both. */
#define ASK_WAIT_MS 120000

/* The next line, waiting at most ASK_WAIT_MS for it. */
static int next_line_wait(conn_t *c, char *out, size_t cap) {
  if (!(c->len && memchr(c->buf, '\n', c->len))) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, ASK_WAIT_MS)) < 0 && errno == EINTR) {
    }
    if (r == 0) return -1;
  }
  return next_line(c, out, cap);
}

/* Words joined by spaces into one line of text the agent takes; 2 (usage) if it is not one. */
static int join_text(char *out, size_t cap, const char *const *words, int n, const char *what) {
  size_t len = 0;
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    int k = snprintf(out + len, cap - len, "%s%s", i ? " " : "", words[i]);
    if (k < 0 || (size_t)k >= cap - len) {
      fprintf(stderr, "tether-agent: the %s is too long (at most %u bytes)\n", what, (unsigned)TT_TEXT_MAX);
      return 2;
    }
    len += (size_t)k;
  }
  if (!len) {
    fprintf(stderr, "tether-agent: say what is wrong: tether-agent ask \"the printer on floor 2 jams\"\n");
    return 2;
  }
  if (!tt_text_valid(tt_text(out), TT_TEXT_MAX)) {
    fprintf(stderr, "tether-agent: the %s must be one line of at most %u bytes, without control characters\n", what,
            (unsigned)TT_TEXT_MAX);
    return 2;
  }
  return 0;
}

/* One request line, one answer line: OK/QUEUED print out(ok), ERR goes to stderr. */
static int one_exchange(const agent_cfg_t *cfg, const char *req, char *answer, size_t cap) {
  conn_t c;
  if (local_connect(cfg, &c)) return 1;
  int rc = 1;
  /* A client the agent refuses (one started in a support session) is told why and closed:
   * the line may be there even when the request could not be written. */
  (void)say(&c, req);
  if (next_line_wait(&c, answer, cap) <= 0) {
    fprintf(stderr, "tether-agent: the agent did not answer\n");
  } else if (strncmp(answer, "ERR ", 4) == 0) {
    fprintf(stderr, "tether-agent: %s\n", answer + 4);
  } else {
    rc = 0;
  }
  close(c.fd);
  return rc;
}

int agent_local_ask(const agent_cfg_t *cfg, const char *const *words, int n) {
  char text[TT_TEXT_MAX + 1], req[TT_LOCAL_LINE_MAX], answer[TT_LOCAL_LINE_MAX * 2 + 1];
  int rc = join_text(text, sizeof(text), words, n, "request");
  if (rc) return rc;
  snprintf(req, sizeof(req), "ASK %s", text);
  printf("taking a diagnostics snapshot and sending your request...\n");
  fflush(stdout);
  if ((rc = one_exchange(cfg, req, answer, sizeof(answer)))) return rc;
  if (strncmp(answer, "QUEUED ", 7) == 0) {
    printf("%s\n", answer + 7);
    return 0;
  }
  char *f[3];
  if (strncmp(answer, "OK ", 3) != 0 || fields(answer + 3, f, 3) != 3) {
    fprintf(stderr, "tether-agent: unexpected answer from the agent\n");
    return 1;
  }
  printf("%s opened; a technician will contact you\n", f[0]);
  if (strcmp(f[1], "0") == 0) printf("(no diagnostics snapshot attached%s%s)\n", f[2][0] ? ": " : "", f[2]);
  return 0;
}

int agent_local_comment(const agent_cfg_t *cfg, const char *ticket, const char *const *words, int n) {
  char text[TT_TEXT_MAX + 1], req[TT_LOCAL_LINE_MAX], answer[TT_LOCAL_LINE_MAX * 2 + 1];
  uint64_t id = agent_parse_id(ticket, 'T');
  if (!id) {
    fprintf(stderr, "tether-agent: not a ticket: %s (T-42 or 42)\n", ticket);
    return 2;
  }
  int rc = join_text(text, sizeof(text), words, n, "comment");
  if (rc) return rc;
  snprintf(req, sizeof(req), "COMMENT T-%llu %s", (unsigned long long)id, text);
  if ((rc = one_exchange(cfg, req, answer, sizeof(answer)))) return rc;
  printf("comment added to T-%llu\n", (unsigned long long)id);
  return 0;
}

int agent_local_tickets(const agent_cfg_t *cfg) {
  conn_t c;
  char line[TT_LOCAL_LINE_MAX * 2 + 1];
  if (local_connect(cfg, &c)) return 1;
  int rc = 1, n = 0;
  (void)say(&c, "TICKETS"); /* a refused client still reads why (one_exchange) */
  for (;;) {
    int r = next_line_wait(&c, line, sizeof(line));
    if (r <= 0) goto lost;
    if (strncmp(line, "OK", 2) == 0) {
      if (strcmp(line, "OK more") == 0) printf("(older tickets are not shown)\n");
      break;
    }
    if (strncmp(line, "ERR ", 4) == 0) {
      fprintf(stderr, "tether-agent: %s\n", line + 4);
      goto out;
    }
    char *f[8];
    if (strncmp(line, "TICKET ", 7) != 0 || fields(line + 7, f, 8) != 8) continue;
    char updated[32];
    agent_fmt_time(updated, sizeof(updated), strtoll(f[3], NULL, 10));
    if (n++ == 0) printf("%-8s %-9s %-16s %-20s %s\n", "TICKET", "STATE", "TECHNICIAN", "UPDATED", "SUMMARY");
    printf("%-8s %-9s %-16s %-20s %s\n", f[0], f[1], f[2][0] ? f[2] : "(not yet)", updated, f[6]);
    if (f[4][0]) {
      char when[32];
      agent_fmt_time(when, sizeof(when), strtoll(f[5], NULL, 10));
      printf("         last reply: %s, %s: %s\n", f[4], when, f[7]);
    }
  }
  if (n == 0) printf("you have no help requests from this machine\n");
  rc = 0;
  goto out;
lost:
  fprintf(stderr, "tether-agent: the agent did not answer\n");
out:
  close(c.fd);
  return rc;
}

/* ---- checks ------------------------------------------------------------------------------ */

#define CHECK_COLS 6
/* Rows: every result the agent keeps, and a row per check without one. */
#define CHECK_ROWS (TT_CHECK_RESULTS_MAX + 2 * TT_CHECK_COUNT)

typedef struct {
  char col[CHECK_COLS][TT_CHECK_TEXT_MAX * 2 + 32];
} check_row_t;

/* One line of CHECKS as a row: CHECK DIMENSION STATE VALUE THRESHOLD SINCE. 0 if it is not one. */
static int check_row(char *line, check_row_t *r) {
  char *f[10];
  memset(r, 0, sizeof(*r));
  if (strncmp(line, "CHECK ", 6) == 0 && fields(line + 6, f, 10) == 10) {
    snprintf(r->col[0], sizeof(r->col[0]), "%.*s", (int)sizeof(r->col[0]) - 1, f[0]);
    snprintf(r->col[1], sizeof(r->col[1]), "%s", f[1][0] ? f[1] : "-");
    /* A change under way shows with its count: "ok (failing 1/3)". */
    if (strcmp(f[2], f[3]) && strcmp(f[3], "pending"))
      snprintf(r->col[2], sizeof(r->col[2]), "%s (%s %s/%s)", f[2], f[3], f[4], f[5]);
    else
      snprintf(r->col[2], sizeof(r->col[2]), "%s", f[2]);
    /* An unknown result has no value: why it is unknown instead. */
    snprintf(r->col[3], sizeof(r->col[3]), "%s", f[6][0] ? f[6] : f[9]);
    snprintf(r->col[4], sizeof(r->col[4]), "%s", f[7]);
    long long since = strtoll(f[8], NULL, 10);
    if (since > 0) agent_fmt_time(r->col[5], sizeof(r->col[5]), since);
    return 1;
  }
  const char *word = strncmp(line, "OFF ", 4) == 0 ? "off" : strncmp(line, "NA ", 3) == 0 ? "n/a"
                     : strncmp(line, "WAIT ", 5) == 0                                     ? "pending"
                                                                                          : NULL;
  if (!word) return 0;
  size_t n = fields(strchr(line, ' ') + 1, f, 2);
  snprintf(r->col[0], sizeof(r->col[0]), "%s", f[0]);
  snprintf(r->col[1], sizeof(r->col[1]), "-");
  snprintf(r->col[2], sizeof(r->col[2]), "%s", word);
  snprintf(r->col[3], sizeof(r->col[3]), "%s", n == 2 ? f[1] : word[0] == 'p' ? "not run yet" : "");
  return 1;
}

int agent_local_checks(const agent_cfg_t *cfg) {
  conn_t c;
  char line[TT_LOCAL_LINE_MAX * 2 + 1];
  static check_row_t rows[CHECK_ROWS + 1];
  static const char *const head[CHECK_COLS] = {"CHECK", "DIMENSION", "STATE", "VALUE", "THRESHOLD", "SINCE"};
  size_t n = 0, width[CHECK_COLS];
  unsigned long long version = 0;
  char over[256] = "";
  if (local_connect(cfg, &c)) return 1;
  int rc = 1;
  if (say(&c, "CHECKS")) goto lost;
  for (;;) {
    int r = next_line(&c, line, sizeof(line));
    if (r <= 0) goto lost;
    if (strcmp(line, "OK") == 0) break;
    if (strncmp(line, "ERR ", 4) == 0) {
      fprintf(stderr, "tether-agent: %s\n", line + 4);
      goto out;
    }
    if (strncmp(line, "POLICY ", 7) == 0) version = strtoull(line + 7, NULL, 10);
    else if (strncmp(line, "OVER ", 5) == 0) {
      /* Appended as far as it fits: "a, b, c". */
      size_t o = strlen(over);
      if (o && o + 2 < sizeof(over)) memcpy(over + o, ", ", 2), o += 2;
      size_t k = strnlen(line + 5, sizeof(over) - 1 - o);
      memcpy(over + o, line + 5, k);
      over[o + k] = '\0';
    } else if (n < CHECK_ROWS && check_row(line, &rows[n])) n++;
  }
  if (version) printf("policy: version %llu from the broker\n", version);
  else printf("policy: none from the broker yet (the defaults and this machine's config)\n");
  for (size_t k = 0; k < CHECK_COLS; k++) width[k] = strlen(head[k]);
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < CHECK_COLS; k++)
      if (strlen(rows[i].col[k]) > width[k]) width[k] = strlen(rows[i].col[k]);
  for (size_t i = 0; i <= n; i++) {
    const char *const *cols = NULL;
    const char *tmp[CHECK_COLS];
    if (i == 0) cols = head;
    else {
      for (size_t k = 0; k < CHECK_COLS; k++) tmp[k] = rows[i - 1].col[k];
      cols = tmp;
    }
    printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", (int)width[0], cols[0], (int)width[1], cols[1], (int)width[2],
           cols[2], (int)width[3], cols[3], (int)width[4], cols[4], cols[5]);
  }
  if (over[0]) {
    /* "disk_used\t3": the TAB to " " */
    for (char *t = over; *t; t++)
      if (*t == '\t') *t = ' ';
    printf("not tracked (more results than the agent keeps): %s\n", over);
  }
  rc = 0;
  goto out;
lost:
  fprintf(stderr, "tether-agent: the agent closed the connection\n");
out:
  close(c.fd);
  return rc;
}

/* ---- prompt ----------------------------------------------------------------------------- */

#define PENDING_MAX AGENT_PROMPTS_MAX

/* Requests wait in arrival order and only the first is on screen: an answer always goes to
 * the question the employee is looking at. */
typedef struct {
  char id[16];
  char text[TT_LOCAL_LINE_MAX + 128]; /* the question, printed when it comes first */
} pending_t;

typedef struct {
  pending_t q[PENDING_MAX];
  size_t n;
  bool head_changed; /* the request on screen went away unanswered */
} queue_t;

static void show_head(const queue_t *q) {
  if (!q->n) return;
  printf("\n%s", q->q[0].text);
  if (q->n > 1) printf("(%zu more waiting) ", q->n - 1);
  fflush(stdout);
}

/* Drop a request; true if it was the one on screen (the next one is shown then). */
static bool queue_drop(queue_t *q, const char *id) {
  for (size_t i = 0; i < q->n; i++) {
    if (strcmp(q->q[i].id, id) != 0) continue;
    memmove(&q->q[i], &q->q[i + 1], (q->n - i - 1) * sizeof(q->q[0]));
    q->n--;
    return i == 0;
  }
  return false;
}

/* The access words as a phrase for the question: "shell,files,diag" -> "shell, file and
 * diag" (so that the employee reads "file access"). */
static void access_phrase(const char *words, char *out, size_t cap) {
  size_t n = 0, total = 1;
  for (const char *s = words; *s; s++) total += *s == ',';
  out[0] = '\0';
  for (size_t i = 0; *words && n < cap; i++) {
    size_t len = strcspn(words, ",");
    const char *sep = i == 0 ? "" : i + 1 == total ? " and " : ", ";
    bool files = len == 5 && strncmp(words, "files", 5) == 0;
    int k = snprintf(out + n, cap - n, "%s%.*s", sep, (int)(files ? 4 : len), words);
    if (k < 0) break;
    n += (size_t)k;
    words += len + (words[len] == ',');
  }
}

/* "alice asks for shell access for 30 min under T-3: "printer broken". Allow? [y/N] (60 s)" */
static void show_prompt(char *rest, queue_t *q) {
  char *f[7];
  if (fields(rest, f, 7) != 7) return;
  char dur[32];
  fmt_duration(dur, sizeof(dur), strtoull(f[4], NULL, 10));
  size_t idlen = strlen(f[0]);
  if (q->n >= PENDING_MAX || idlen >= sizeof(q->q[0].id)) return; /* the agent's own cap is lower */
  pending_t *p = &q->q[q->n++];
  memcpy(p->id, f[0], idlen + 1);
  char access[64];
  access_phrase(f[3], access, sizeof(access));
  snprintf(p->text, sizeof(p->text), "%s asks for %s access for %s under %s: \"%s\". Allow? [y/N] (%s s) ", f[1],
           access, dur, f[2], f[6], f[5]);
  show_head(q); /* the first, or the question on screen again with the count behind it */
}

static volatile sig_atomic_t g_stop;
static void on_stop(int sig) {
  (void)sig;
  g_stop = 1;
}

/* One line from the agent: a prompt, a cancel, an ended session. 0 to go on. */
static void prompt_line(char *line, queue_t *q) {
  if (strncmp(line, "PROMPT ", 7) == 0) {
    show_prompt(line + 7, q);
  } else if (strncmp(line, "CANCEL ", 7) == 0) {
    char *f[2];
    if (fields(line + 7, f, 2) != 2) return;
    bool had = false;
    for (size_t i = 0; i < q->n; i++) had |= strcmp(q->q[i].id, f[0]) == 0;
    bool head = queue_drop(q, f[0]);
    if (had) printf("\n(request %s: %s)\n", f[0], f[1]);
    if (head) {
      q->head_changed = true; /* what was typed for that one must not answer the next */
      show_head(q);
    }
    fflush(stdout);
  } else if (strncmp(line, "STARTED ", 8) == 0) {
    char *f[7];
    if (fields(line + 8, f, 7) != 7) return;
    time_t until = (time_t)strtoll(f[4], NULL, 10);
    struct tm tm;
    char hhmm[16] = "?";
    if (localtime_r(&until, &tm)) strftime(hhmm, sizeof(hhmm), "%H:%M", &tm);
    char access[64];
    access_phrase(f[3], access, sizeof(access));
    printf("\n%s is connected to this computer under %s (%s access until %s, %s)%s: \"%s\"\n", f[1], f[2], access,
           hhmm, f[0], strcmp(f[5], "unattended") == 0 ? ", unattended: no one was asked" : "", f[6]);
    fflush(stdout);
  } else if (strncmp(line, "ACTIVITY ", 9) == 0) {
    char *f[3];
    if (fields(line + 9, f, 3) != 3) return;
    printf("%s %s (%s)\n", f[1], f[2], f[0]);
    fflush(stdout);
  } else if (strncmp(line, "ENDED ", 6) == 0) {
    char *f[3];
    if (fields(line + 6, f, 3) != 3) return;
    printf("\nsupport session %s ended (%s): %s\n", f[0], f[1], f[2]);
    fflush(stdout);
  } else if (strncmp(line, "NOTICE ", 7) == 0) {
    char *f[4];
    if (fields(line + 7, f, 4) != 4) return;
    if (strcmp(f[1], "public-comment") == 0) printf("\n%s: %s replied: %s\n", f[0], f[2], f[3]);
    else printf("\n%s was %s by %s\n", f[0], f[1], f[2]);
    fflush(stdout);
  } else if (strncmp(line, "HELP ", 5) == 0) {
    char *f[4];
    if (fields(line + 5, f, 4) != 4) return;
    if (strcmp(f[1], "opened") == 0) printf("\nyour request \"%s\" reached the help desk as %s\n", f[2], f[0]);
    else printf("\nyour request \"%s\" was not taken: %s\n", f[2], f[3]);
    fflush(stdout);
  } else if (strncmp(line, "ERR ", 4) == 0) {
    fprintf(stderr, "tether-agent: %s\n", line + 4);
  }
}

/* Complete lines of in answer the waiting requests, oldest first. */
static int answer_lines(conn_t *c, char *in, size_t *inlen, queue_t *q) {
  char *nl;
  while (q->n && (nl = memchr(in, '\n', *inlen))) {
    *nl = '\0';
    bool yes = in[0] == 'y' || in[0] == 'Y';
    char ans[64];
    snprintf(ans, sizeof(ans), "ANSWER %s %s", q->q[0].id, yes ? "yes" : "no");
    printf("%s\n", yes ? "allowed" : "refused");
    fflush(stdout);
    (void)queue_drop(q, q->q[0].id);
    if (say(c, ans)) return -1;
    show_head(q);
    size_t used = (size_t)(nl - in) + 1;
    memmove(in, nl + 1, *inlen - used);
    *inlen -= used;
  }
  return 0;
}

int agent_local_prompt(const agent_cfg_t *cfg) {
  conn_t c;
  char line[TT_LOCAL_LINE_MAX * 2 + 1];
  char in[256];
  size_t inlen = 0;
  bool in_eof = false;
  /* On a terminal, keys typed while nothing is asked are dropped: a stray "y" must never
   * answer a request that arrives later. From a pipe (tests, scripts) they wait for it. */
  bool tty = isatty(0);
  queue_t q = {0};
  struct sigaction sa = {.sa_handler = on_stop};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  if (local_connect(cfg, &c)) return 1;
  /* Ready once the agent has taken the WATCH: its OK comes before anything it tells. */
  if (say(&c, "WATCH") || next_line(&c, line, sizeof(line)) <= 0) goto lost;
  if (strncmp(line, "ERR ", 4) == 0) {
    fprintf(stderr, "tether-agent: %s\n", line + 4);
    close(c.fd);
    return 1;
  }
  printf("waiting for support requests (Ctrl-C to stop)\n");
  if (strcmp(line, "OK") != 0) prompt_line(line, &q);
  fflush(stdout);
  while (!g_stop) {
    if (answer_lines(&c, in, &inlen, &q)) goto lost;
    if (in_eof && !memchr(in, '\n', inlen)) break; /* nothing left to answer with */
    struct pollfd p[2] = {{.fd = c.fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    int np = in_eof || inlen == sizeof(in) - 1 ? 1 : 2;
    if (c.len && memchr(c.buf, '\n', c.len)) p[0].revents = POLLIN;
    else if (poll(p, (nfds_t)np, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) {
      int r = next_line(&c, line, sizeof(line));
      if (r <= 0) goto lost;
      if (strcmp(line, "OK") != 0) prompt_line(line, &q);
      if (q.head_changed && tty) inlen = 0;
      q.head_changed = false;
      continue;
    }
    if (np == 2 && p[1].revents) {
      ssize_t r = read(0, in + inlen, sizeof(in) - 1 - inlen);
      if (r <= 0) {
        in_eof = true;
        continue;
      }
      inlen += (size_t)r;
      if (tty && q.n == 0) inlen = 0;
      if (inlen == sizeof(in) - 1 && !memchr(in, '\n', inlen)) inlen = 0; /* longer than any answer */
    }
  }
  close(c.fd);
  return 0;
lost:
  fprintf(stderr, "tether-agent: the agent closed the connection\n");
  close(c.fd);
  return 1;
}
