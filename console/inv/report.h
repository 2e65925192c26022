/* Showing a device's diagnostics report (the agent's JSON, agent/inv/inv.h) to a person: a
 * page of the facts asked for on a call, each table that failed with its reason; or the
 * document itself, validated and re-escaped, for scripts. */
#ifndef CONSOLE_INV_REPORT_H
#define CONSOLE_INV_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* Parse n bytes from the device: one JSON object with a "tables" object whose members each
 * have "columns" (strings) and "rows" (arrays of strings of that width). NULL with why in
 * err otherwise. */
json_t *console_report_parse(const char *buf, size_t n, char *err, size_t errlen);
/* One table's shape: columns (1..64 strings) and rows of strings of that width, an optional
 * error string. What every printer here relies on. */
bool console_table_ok(json_t *t);
/* The readable page. */
void console_report_print(FILE *f, json_t *doc);
/* The document as JSON (ASCII only: every non-ASCII character \u-escaped), one line. */
int console_report_json(FILE *f, json_t *doc);

#endif
