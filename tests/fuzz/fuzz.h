/* fuzz — what every libFuzzer target in tests/fuzz/ defines. */
#ifndef PROXYSTONE_FUZZ_H
#define PROXYSTONE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Called by libFuzzer once per input; returns 0 (the input is consumed,
 * whatever it held). Crashes, sanitizer reports and abort() are findings. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
