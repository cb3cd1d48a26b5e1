/* SPDX-License-Identifier: MIT */
#ifndef IOTHREAD_VERSION_H
#define IOTHREAD_VERSION_H

#define IOT_VERSION_MAJOR 0
#define IOT_VERSION_MINOR 1
#define IOT_VERSION_PATCH 0
/* 0xMMmmpp, comparable with < and >. */
#define IOT_VERSION_HEX                                                        \
    ((IOT_VERSION_MAJOR << 16) | (IOT_VERSION_MINOR << 8) | IOT_VERSION_PATCH)

#if defined(IOT_BUILDING_LIBRARY)
#define IOT_API __attribute__((visibility("default")))
#else
#define IOT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif
/* The version of the library actually loaded, as IOT_VERSION_HEX. */
IOT_API unsigned iot_version(void);
IOT_API const char *iot_version_string(void);
#ifdef __cplusplus
}
#endif

#endif
