/* Words the agent shows its employee and reads from them: access bits as words, session
 * ids as typed ("S-4" or "4"). Pure functions, unit-tested in tests/unit/test_agent_words.c. */
#include <stdint.h>
#include <stdio.h>
#include "agent.h"

const char *agent_access_words(uint32_t access, char *out, size_t cap) {
  static const struct { uint32_t bit; const char *word; } w[] = {
      {TETHER__ACCESS__ACCESS_SHELL, "shell"}, {TETHER__ACCESS__ACCESS_FILES, "files"},
      {TETHER__ACCESS__ACCESS_DIAG, "diag"}};
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
    if (!(access & w[i].bit)) continue;
    int k = snprintf(out + n, cap - n, "%s%s", n ? "," : "", w[i].word);
    if (k < 0 || (size_t)k >= cap - n) break;
    n += (size_t)k;
  }
  if (n == 0) snprintf(out, cap, "none");
  return out;
}

uint64_t agent_parse_id(const char *s, char prefix) {
  if (s[0] == prefix && s[1] == '-') s += 2;
  if (*s < '1' || *s > '9') return 0;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return 0;
    uint64_t d = (uint64_t)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return 0; /* v * 10 + d would wrap */
    v = v * 10 + d;
  }
  return v;
}
