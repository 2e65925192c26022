/* What a LIST returned: the entries kept (bounded, since a device decides how many it
 * sends), sorted as a tree, and shown as `ls -l` shows them or as JSON. Every name, owner
 * and link target comes from the device and reaches the terminal only escaped. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "files.h"

files_listing_t *files_listing_new(void) {
  return calloc(1, sizeof(files_listing_t));
}

static void entry_free(files_entry_t *e) {
  free(e->path.data);
  free(e->owner.data);
  free(e->group.data);
  free(e->link.data);
}

void files_listing_free(files_listing_t *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) entry_free(&l->v[i]);
  free(l->v);
  free(l);
}

/* A copy with a NUL after it, so that a checked path can be used as a C string. */
static int copy_bytes(ProtobufCBinaryData *dst, ProtobufCBinaryData src) {
  dst->len = src.len;
  dst->data = malloc(src.len + 1);
  if (!dst->data) return TT_ENOMEM;
  if (src.len) memcpy(dst->data, src.data, src.len);
  dst->data[src.len] = '\0';
  return 0;
}

int files_listing_add(files_listing_t *l, const Tether__FileStat *st) {
  if (!st) return TT_EPROTO;
  if (l->n >= TT_FILE_LIST_MAX) return TT_ETOOBIG;
  size_t text = st->path.len + st->owner.len + st->group.len + st->link.len + 4;
  if (text > TT_FILE_LIST_BYTES_MAX - l->bytes) return TT_ETOOBIG;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    files_entry_t *v = realloc(l->v, cap * sizeof(*v));
    if (!v) return TT_ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  files_entry_t *e = &l->v[l->n];
  memset(e, 0, sizeof(*e));
  if (copy_bytes(&e->path, st->path) || copy_bytes(&e->owner, st->owner) || copy_bytes(&e->group, st->group) ||
      copy_bytes(&e->link, st->link)) {
    entry_free(e);
    return TT_ENOMEM;
  }
  e->kind = st->kind;
  e->size = st->size;
  e->mtime_ns = st->mtime_ns;
  e->mode = st->mode & 07777;
  l->bytes += text;
  l->n++;
  return 0;
}

static int cmp_entry(const void *a, const void *b) {
  const files_entry_t *x = a, *y = b;
  return files_path_cmp(x->path.data, x->path.len, y->path.data, y->path.len);
}

void files_listing_sort(files_listing_t *l) {
  if (l->n > 1) qsort(l->v, l->n, sizeof(l->v[0]), cmp_entry);
}

void files_mode_string(char *out, Tether__FileKind kind, uint32_t mode) {
  static const char rwx[] = "rwxrwxrwx";
  switch (kind) {
  case TETHER__FILE_KIND__FILE_KIND_REGULAR: out[0] = '-'; break;
  case TETHER__FILE_KIND__FILE_KIND_DIR: out[0] = 'd'; break;
  case TETHER__FILE_KIND__FILE_KIND_SYMLINK: out[0] = 'l'; break;
  default: out[0] = '?'; break;
  }
  for (int i = 0; i < 9; i++) out[1 + i] = (mode & (0400u >> i)) ? rwx[i] : '-';
  if (mode & 04000) out[3] = out[3] == 'x' ? 's' : 'S';
  if (mode & 02000) out[6] = out[6] == 'x' ? 's' : 'S';
  if (mode & 01000) out[9] = out[9] == 'x' ? 't' : 'T';
  out[10] = '\0';
}

static const char *kind_word(Tether__FileKind k) {
  switch (k) {
  case TETHER__FILE_KIND__FILE_KIND_REGULAR: return "file";
  case TETHER__FILE_KIND__FILE_KIND_DIR: return "dir";
  case TETHER__FILE_KIND__FILE_KIND_SYMLINK: return "symlink";
  default: return "other";
  }
}

static uint64_t mtime_ms(int64_t ns) {
  return ns > 0 ? (uint64_t)ns / 1000000u : 0;
}

#define SHOWN_MAX (TT_FILE_PATH_MAX * 4 + 1)

/* Owner or group for a column: its name, or "-" when the device sent none. */
static void owner_shown(char *out, size_t cap, ProtobufCBinaryData t) {
  console_text(out, cap, t);
  if (!out[0]) snprintf(out, cap, "-");
}

void files_listing_print(FILE *f, const files_listing_t *l) {
  char owner[TT_NAME_MAX * 4 + 1], group[TT_NAME_MAX * 4 + 1], num[24];
  int wo = 1, wg = 1, ws = 1;
  char *name = malloc(SHOWN_MAX), *link = malloc(SHOWN_MAX);
  if (!name || !link) goto out;
  /* Owners longer than a name are cut: a column is for reading, the JSON has them whole. */
  for (size_t i = 0; i < l->n; i++) {
    const files_entry_t *e = &l->v[i];
    owner_shown(owner, sizeof(owner), e->owner);
    owner_shown(group, sizeof(group), e->group);
    int n = snprintf(num, sizeof(num), "%" PRIu64, e->size);
    if ((int)strlen(owner) > wo) wo = (int)strlen(owner);
    if ((int)strlen(group) > wg) wg = (int)strlen(group);
    if (n > ws) ws = n;
  }
  for (size_t i = 0; i < l->n; i++) {
    const files_entry_t *e = &l->v[i];
    char mode[11], when[40];
    files_mode_string(mode, e->kind, e->mode);
    owner_shown(owner, sizeof(owner), e->owner);
    owner_shown(group, sizeof(group), e->group);
    console_iso(when, sizeof(when), mtime_ms(e->mtime_ns), false);
    console_text(name, SHOWN_MAX, e->path);
    if (!name[0]) snprintf(name, SHOWN_MAX, ".");
    fprintf(f, "%s  %-*s %-*s %*" PRIu64 "  %s  %s", mode, wo, owner, wg, group, ws, e->size, when, name);
    if (e->kind == TETHER__FILE_KIND__FILE_KIND_SYMLINK) {
      console_text(link, SHOWN_MAX, e->link);
      fprintf(f, " -> %s", link);
    }
    fputc('\n', f);
  }
out:
  free(name);
  free(link);
}

void files_listing_json(FILE *f, const files_listing_t *l) {
  fputc('[', f);
  for (size_t i = 0; i < l->n; i++) {
    const files_entry_t *e = &l->v[i];
    char when[40];
    if (i) fputc(',', f);
    fputs("{\"path\":", f);
    console_json_bytes(f, e->path);
    fprintf(f, ",\"kind\":\"%s\",\"size\":%" PRIu64 ",\"mtime\":", kind_word(e->kind), e->size);
    console_iso(when, sizeof(when), mtime_ms(e->mtime_ns), true);
    console_json_str(f, when);
    fprintf(f, ",\"mode\":\"%04o\",\"owner\":", (unsigned)e->mode);
    console_json_bytes(f, e->owner);
    fputs(",\"group\":", f);
    console_json_bytes(f, e->group);
    fputs(",\"link\":", f);
    if (e->kind == TETHER__FILE_KIND__FILE_KIND_SYMLINK) console_json_bytes(f, e->link);
    else fputs("null", f);
    fputc('}', f);
  }
  fputs("]\n", f);
}
