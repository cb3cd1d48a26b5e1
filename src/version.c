/* SPDX-License-Identifier: MIT */
#include <iothread/version.h>

#define STR_(x) #x
#define STR(x)  STR_(x)

unsigned iot_version(void)
{
    return IOT_VERSION_HEX;
}

const char *iot_version_string(void)
{
    return STR(IOT_VERSION_MAJOR) "." STR(IOT_VERSION_MINOR) "." STR(
        IOT_VERSION_PATCH);
}
