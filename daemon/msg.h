/* SPDX-License-Identifier: MIT */
/* iothreadd: one-line error messages for the caller to print (cmdline.c). */
#ifndef IOTHREADD_MSG_H
#define IOTHREADD_MSG_H

/* Sets *@msg to the formatted text (malloc'd; NULL if out of memory) and
 * returns -1, so that a failing function can end with
 * "return msg_fail(msg, ...);". */
__attribute__((format(printf, 2, 3))) int msg_fail(char **msg, const char *fmt,
                                                   ...);

#endif
