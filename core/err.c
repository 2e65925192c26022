/* The one list of error codes, turned into messages and names. */
#include <string.h>
#include <uv.h>
#include "tt/err.h"

const char *tt_strerror(int code) {
  switch (code) {
  case TT_OK: return "success";
#define TT_ERR_MSG(name, val, msg) case name: return msg;
  TT_ERRORS(TT_ERR_MSG)
#undef TT_ERR_MSG
  default: break;
  }
  if (code < 0 && code > -10000) return uv_strerror(code);
  return "unknown error";
}

const char *tt_errname(int code) {
  switch (code) {
  case TT_OK: return "OK";
#define TT_ERR_NAME(name, val, msg) case name: return #name;
  TT_ERRORS(TT_ERR_NAME)
#undef TT_ERR_NAME
  default: break;
  }
  if (code < 0 && code > -10000) return uv_err_name(code);
  return "UNKNOWN";
}
