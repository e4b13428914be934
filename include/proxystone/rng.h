/*
 * rng — a small, fast, seedable PRNG (xoshiro256**, seeded through
 * splitmix64) for protocol randomness that must replay exactly from a seed:
 * the SWIM core and its simulator. Not for secrets (libsodium does those).
 */
#ifndef PROXYSTONE_RNG_H
#define PROXYSTONE_RNG_H

#include <stddef.h>
#include <stdint.h>

struct rng {
	uint64_t s[4];
};

/* The same seed gives the same sequence, on every machine. */
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, n) without modulo bias worth mentioning (Lemire). */
size_t rng_below(struct rng *r, size_t n);
/* Uniform in [0, 1) with 53 random bits. */
double rng_unit(struct rng *r);

#endif
