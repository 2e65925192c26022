/* Tether's error codes: one list, one message function.
 * Functions return 0 or a negative code; libuv's codes (-errno, UV_EOF) pass through. */
#ifndef TT_ERR_H
#define TT_ERR_H

#define TT_WUR __attribute__((warn_unused_result))
#define TT_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Our codes sit far below libuv's (which stop above -4096) so both share one int. */
#define TT_ERRORS(X)                                                        \
  X(TT_EPROTO,   -10001, "protocol violation")                              \
  X(TT_ETOOBIG,  -10002, "size exceeds limit")                              \
  X(TT_EAGAIN,   -10003, "need more data")                                  \
  X(TT_EKIND,    -10004, "unknown or misplaced frame kind")                 \
  X(TT_ENOMEM,   -10005, "out of memory")                                   \
  X(TT_EFULL,    -10006, "queue or buffer full")                            \
  X(TT_ECONFIG,  -10007, "bad configuration")                               \
  X(TT_ETLS,     -10008, "TLS failure")                                     \
  X(TT_ECERT,    -10009, "certificate refused")                             \
  X(TT_EROLE,    -10010, "role not permitted")                              \
  X(TT_EVERSION, -10011, "protocol version not supported")                  \
  X(TT_EWINDOW,  -10012, "flow-control window overrun")                     \
  X(TT_ECHANNEL, -10013, "unknown channel or bad channel state")            \
  X(TT_ETIMEOUT, -10014, "timed out")                                       \
  X(TT_ECLOSED,  -10015, "connection closed")                               \
  X(TT_EINVAL,   -10016, "invalid argument")                                \
  X(TT_ENOTFOUND,-10017, "not found")                                       \
  X(TT_EBUSY,    -10018, "busy, try again later")                           \
  X(TT_EZSTD,    -10019, "compression failure")                             \
  X(TT_EIO,      -10020, "I/O error")                                       \
  X(TT_ESTATE,   -10021, "operation not valid in this state")               \
  X(TT_EDENIED,  -10022, "access denied")                                   \
  X(TT_ETEXT,    -10023, "text field not valid UTF-8 or has control chars") \
  X(TT_EPEER,    -10024, "peer reported an error")

enum tt_err_e {
  TT_OK = 0,
#define TT_ERR_ENUM(name, val, msg) name = (val),
  TT_ERRORS(TT_ERR_ENUM)
#undef TT_ERR_ENUM
};

/* A message for any code: ours, libuv's, or an errno negated. Never NULL. */
const char *tt_strerror(int code);
/* The code's symbolic name ("TT_EPROTO", "ECONNREFUSED"). Never NULL. */
const char *tt_errname(int code);

#endif
