/* tether report: the broker's numbers, written for people (a table), for spreadsheets (CSV),
 * for programs (JSON) and for managers' browsers (one HTML page with inline SVG charts). Every
 * format carries the same numbers. */
#ifndef CONSOLE_REPORT_H
#define CONSOLE_REPORT_H

#include <stdio.h>
#include "tt/msg.h"

/* A duration the way a person reads it: 45s, 12m, 3h05m, 2d4h. */
void report_dur(char *dst, size_t cap, uint64_t ms);
/* "technician", "priority", ... ("" for one row). */
const char *report_by_word(Tether__ReportBy by);
/* The backlog bucket i's label ("<1d", "1-3d", ..., "30d+"). */
void report_backlog_label(char *dst, size_t cap, const Tether__Report *r, size_t i);
/* A row's key as shown ("all" for the total). */
void report_key(char *dst, size_t cap, const Tether__ReportRow *row);

/* report_html.c: the whole page, self-contained (no script, no network). */
void report_html(FILE *f, const Tether__Report *r);

#endif
