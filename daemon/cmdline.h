/* SPDX-License-Identifier: MIT */
/*
 * iothreadd's command line, in qemu-storage-daemon's syntax for what we
 * support.  Parsing is pure: it checks everything and creates nothing, so
 * a bad option leaves nothing behind.
 */
#ifndef IOTHREADD_CMDLINE_H
#define IOTHREADD_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <iothread/iothread.h>

typedef struct CfgObject {
    char *spec; /* the --object argument, as given (for errors) */
    char *id;
    IotThreadProps *props;
    bool has_type; /* qom-type=iothread was given */
} CfgObject;

typedef struct CfgChardev {
    char *id;
    char *path;
    bool monitored; /* a --monitor uses it */
} CfgChardev;

typedef struct DaemonConfig {
    CfgObject *objects;
    size_t nobjects;
    CfgChardev *chardevs;
    size_t nchardevs;
    char **qmp_paths; /* sockets that serve QMP, in order */
    size_t nqmp;
    char *pidfile;
    bool daemonize;
    bool help;
    bool version;
    bool defaults; /* no arguments: the embedded configuration */
} DaemonConfig;

/* Fills @cfg from argv.  0, or -1 with a one-line message in *msg
 * (free()) that names the option. */
int cfg_parse(int argc, char **argv, DaemonConfig *cfg, char **msg);
void cfg_free(DaemonConfig *cfg);
/* Writes a "iothreadd: warning: " line to @f for each thing in @cfg that
 * parses but is likely a mistake: a --chardev no --monitor uses, and no
 * QMP socket at all. */
void cfg_warn(const DaemonConfig *cfg, FILE *f);

/* The embedded default: IOThreads io0 (defaults) and io1 (poll-max-ns=0),
 * QMP on $XDG_RUNTIME_DIR/iothreadd.sock or ./iothreadd.sock. */
int cfg_default(DaemonConfig *cfg, char **msg);

/* Parses "a=1,b=x,,y" (",," is a literal comma); the first element may be
 * a bare value for @implied_key.  Calls @cb for each pair; stops at the
 * first non-zero return.  For the fuzzer and the tests too. */
typedef int CfgPairFunc(void *opaque, const char *key, const char *value,
                        char **msg);
int cfg_keyval(const char *spec, const char *implied_key, CfgPairFunc *cb,
               void *opaque, char **msg);

#endif
