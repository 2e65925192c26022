/* Signed upgrades of this agent (issue 14): the broker offers a release (UpgradeOffer); the
 * agent checks its manifest against the release keys it was given (upgrade.release_keys),
 * its architecture and version, and its disk; downloads the package (and the running
 * version's, to go back to) over CHANNEL_RELEASE, resuming a broken download; checks both
 * against their manifests; then hands over to a guard process outside the service
 * (`tether-agent upgrade-guard`) that installs the package, waits for the new agent to come
 * back healthy (connected to the broker) and installs the old one again if it does not.
 * Every step is reported to the broker (UpgradeReport). State lives in STATE/upgrade/:
 *   SHA.part, SHA.pkg   a download, and a package checked against its manifest
 *   pending             the install under way (key value lines, see guard.c)
 *   healthy             the new agent came back (its version)
 *   outcome             how the guard ended it, reported at the next connect
 *   current.pkg, current.manifest   the running version's package, to roll back to later */
#ifndef AGENT_UPGRADE_H
#define AGENT_UPGRADE_H

#include "agent.h"
#include "tt/release.h"

#define UPGRADE_DIR "upgrade"
/* STATE/upgrade is at most AGENT_PATH_MAX + 16 bytes; a path in it, with room for any name. */
#define UPGRADE_DIR_MAX (AGENT_PATH_MAX + 16)
#define UPGRADE_PATH_MAX (AGENT_PATH_MAX + 128)
#define UPGRADE_PENDING "pending"
#define UPGRADE_HEALTHY "healthy"
#define UPGRADE_OUTCOME "outcome"
#define UPGRADE_CURRENT_PKG "current.pkg"
#define UPGRADE_CURRENT_MANIFEST "current.manifest"
/* Kept free on the upgrade directory's file system beside what a download needs. */
#define UPGRADE_FREE_MARGIN (16ull * 1024 * 1024)
/* The lines of the pending, outcome and healthy files. */
#define UPGRADE_FILE_MAX 4096u

/* The download of one release into dir: SHA.part, then SHA.pkg once it matches. */
typedef struct agent_fetch_s agent_fetch_t;
/* rc 0: path holds the package; else why says what went wrong (for the broker's status). */
typedef void (*agent_fetch_cb)(agent_t *a, int rc, const char *why);
int agent_fetch_start(agent_t *a, const char *dir, const tt_release_t *r, agent_fetch_cb cb, agent_fetch_t **out,
                      char *why, size_t cap) TT_WUR;
/* Bytes held so far. */
uint64_t agent_fetch_done(const agent_fetch_t *f);
void agent_fetch_free(agent_fetch_t *f);
/* Mux callbacks of the channel (chan.c routes by owns). */
bool agent_fetch_owns(const tt_chan_t *ch);
void agent_fetch_accepted(tt_mux_t *m, tt_chan_t *ch);
void agent_fetch_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags);
void agent_fetch_closed(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg);

/* upgrade.c: a download moved on (the broker hears of each quarter). */
void agent_upgrade_progress(agent_t *a, uint64_t done, uint64_t size);

/* "DIR/SHA.EXT" */
void agent_upgrade_file(char *out, size_t cap, const char *dir, const uint8_t sha[32], const char *ext);
/* A small text file whole into buf (NUL-terminated); -1 if missing or too big. */
int agent_upgrade_read(const char *path, char *buf, size_t cap);
/* Write a small text file atomically (tmp, fsync, rename, fsync dir). */
int agent_upgrade_write(const char *dir, const char *name, const char *text);
/* The value of "key VALUE" in a key/value text, into out; false if absent. */
bool agent_upgrade_value(const char *text, const char *key, char *out, size_t cap);

#endif
