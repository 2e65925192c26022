/* What fuzz_files.c and its seeds (gen_corpus.c) share: the input's layout and the tree of
 * files each input starts from, so that a seed can carry the right sha256 of a file. */
#ifndef FUZZ_FILES_H
#define FUZZ_FILES_H

#include <stddef.h>
#include <stdint.h>

/* Byte 0 of an input. */
enum {
  FZF_MODE_ASK = 0x01,        /* the engine is the console (else the agent) */
  FZF_MODE_EARLY = 0x02,      /* console: feed the input before the GET and PUT are out */
  FZF_MODE_FREE_FIRST = 0x04, /* at the end: free the engine before its jobs are back */
  FZF_MODE_WALK = 0x08,       /* the agent resolves paths by walking (no openat2) */
  FZF_MODE_FORCE = 0x10,      /* console: pull and push with force */
};

/* Then records: an op byte (low 3 bits the kind, bit 3: settle after it, bits 4..6: DATA
 * flags for FZF_R_FLAGS, or the link instead of the channel for FZF_R_CLOSE). */
enum {
  FZF_R_CTRL = 0,  /* u16 len, body: DATA with TT_FF_CTRL (a ChannelControl) */
  FZF_R_DATA = 1,  /* u16 len, body: plain DATA (chunk bytes) */
  FZF_R_FLAGS = 2, /* u16 len, body: DATA with the op byte's flags */
  FZF_R_FILL = 3,  /* u8 value, u24 count: that many plain DATA bytes of value */
  FZF_R_WORK = 4,  /* the oldest queued pool job does its work (its completion waits) */
  FZF_R_BACK = 5,  /* the completions of jobs worked so far run on the loop */
  FZF_R_CLOSE = 6, /* the peer closes the channel; with 0x10 the link goes down */
  FZF_R_SETTLE = 7,
  FZF_R_SETTLE_AFTER = 0x08,
  FZF_R_LINK = 0x10,
};

/* The console's ops (FZF_MODE_ASK): a pull of id 1 and a push of id 2. */
#define FZF_PULL_ID 1u
#define FZF_PUSH_ID 2u
#define FZF_PULL_PATH "/srv/files/report.txt"
#define FZF_PUSH_PATH "/srv/files/pushed.txt"
#define FZF_PUSH_SRC 6 /* index in fzf_tree of the file pushed */

/* The shared root's files: path, size (-1: a directory). "ro" is a read-only root inside
 * it; "esc" and "esc-file" are symbolic links out of it (made by the driver). */
static const struct {
  const char *path;
  long size;
} fzf_tree[] = {
    {"a.txt", 100}, {"empty", 0}, {"sub", -1}, {"sub/b.bin", 3000}, {"ro", -1}, {"ro/c.txt", 40}, {"push-src.txt", 2500},
};
#define FZF_TREE_N (sizeof(fzf_tree) / sizeof(fzf_tree[0]))
/* Every file's mtime, so that a resume's stat comparison goes the same way every run. */
#define FZF_MTIME_S 1700000000
#define FZF_MTIME_NS 123456789
#define FZF_MODE 0644u

/* The bytes of file i of the tree: partly text, so that zstd has something to do. */
static inline void fzf_content(uint8_t *p, size_t n, unsigned i) {
  uint32_t x = 2463534242u ^ i;
  for (size_t k = 0; k < n; k++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[k] = (k % 3) ? (uint8_t)("abcdefgh \n"[x % 10]) : (uint8_t)x;
  }
}

#endif
