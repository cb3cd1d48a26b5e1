/* SPDX-License-Identifier: MIT */
#include "harness.h"

int main(int argc, char **argv)
{
    return t_run(argc, argv);
}
