/* Inside certs/: the one writer of files that must be made once (O_EXCL, no symlink, mode set
 * whatever the umask, fsync, removed if short), for keys, certificates and release manifests. */
#ifndef TT_PKI_INT_H
#define TT_PKI_INT_H

#include <stddef.h>
#include <sys/types.h>
#include <openssl/bio.h>
#include "tt/err.h"

/* Writes the file's content to b; 1 on success (OpenSSL's PEM writers fit as they are). */
typedef int (*tt_pki_emit_fn)(BIO *b, void *obj);

/* Create path with emit's content and then mode (it is 0600 while written). Same codes and
 * messages as tt_pki_write_key: -EEXIST ("already exists, refusing to overwrite") when path
 * exists, -errno, TT_EIO, TT_ENOMEM. */
int tt_pki_write_file(const char *path, mode_t mode, tt_pki_emit_fn emit, void *obj, char *err,
                      size_t errlen) TT_WUR;

#endif
