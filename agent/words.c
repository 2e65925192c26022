/* Session ids as the employee types them ("S-4" or "4"). A pure function, unit-tested in
 * tests/unit/agent/test_agent_words.c. */
#include <stdint.h>
#include "agent.h"

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
