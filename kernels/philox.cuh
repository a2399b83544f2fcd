// Philox 4x32-10 and the stream helpers of crates/backend/src/philox.rs, for the device. Every dropout mask
// and noise draw goes through these, so (seed, stream, element index) gives the same word on the CPU and
// the GPU. Plain C++ on purpose: crates/cuda/tests/philox_host.rs compiles this header with the host C++
// compiler (ERNIE_DEVICE and the CUDA vector types shimmed) and checks it against the Rust implementation.
#pragma once

#ifndef ERNIE_DEVICE
#define ERNIE_DEVICE __device__ __forceinline__
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

ERNIE_DEVICE uint4 philox4x32_10(uint4 c, uint2 k) {
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        const unsigned int hi0 = __umulhi(PHILOX_M0, c.x);
        const unsigned int lo0 = PHILOX_M0 * c.x;
        const unsigned int hi1 = __umulhi(PHILOX_M1, c.z);
        const unsigned int lo1 = PHILOX_M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k.x += PHILOX_W0;
        k.y += PHILOX_W1;
    }
    return c;
}

// The four words of block b (elements 4b..4b+3) of stream (seed, stream): RngStream::block.
ERNIE_DEVICE uint4 rng_block(unsigned long long seed, unsigned long long stream, unsigned long long b) {
    const uint4 ctr = make_uint4((unsigned int)b, (unsigned int)(b >> 32), (unsigned int)stream,
                                 (unsigned int)(stream >> 32));
    return philox4x32_10(ctr, make_uint2((unsigned int)seed, (unsigned int)(seed >> 32)));
}

ERNIE_DEVICE unsigned int uint4_at(const uint4& w, unsigned int j) {
    return j == 0 ? w.x : (j == 1 ? w.y : (j == 2 ? w.z : w.w));
}

// RngStream::word with offset 0: the word at absolute stream index i.
ERNIE_DEVICE unsigned int rng_word(unsigned long long seed, unsigned long long stream, unsigned long long i) {
    return uint4_at(rng_block(seed, stream, i >> 2), (unsigned int)(i & 3));
}

// RngStream::derive: splitmix64-style mixing of the stream id with a site id.
ERNIE_DEVICE unsigned long long rng_derive(unsigned long long stream, unsigned long long site) {
    unsigned long long z = stream ^ (site * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// philox::to_uniform: 24 random bits, uniform in [0, 1), exact in f32.
ERNIE_DEVICE float to_uniform(unsigned int w) {
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

// The stream of attention block bh (ernie_backend::cpu::ops::attention_block_stream): for attention an
// RngStream's offset counts (batch, head) blocks, and each block draws from index 0 of its own stream.
ERNIE_DEVICE unsigned long long rng_attention_stream(unsigned long long stream, unsigned long long offset,
                                                     unsigned long long bh) {
    return rng_derive(stream, bh + offset);
}

// RngStream::normal: Box-Muller in f64 from the words at stream indices offset + 2i and offset + 2i + 1
// (the same Philox block unless offset + 2i is its last element).
ERNIE_DEVICE float rng_normal(unsigned long long seed, unsigned long long stream, unsigned long long offset,
                              unsigned long long i) {
    const unsigned long long a0 = offset + 2 * i;
    const unsigned long long a1 = a0 + 1;
    const uint4 w0 = rng_block(seed, stream, a0 >> 2);
    const unsigned int x0 = uint4_at(w0, (unsigned int)(a0 & 3));
    const unsigned int x1 = (a1 >> 2) == (a0 >> 2) ? uint4_at(w0, (unsigned int)(a1 & 3))
                                                   : rng_block(seed, stream, a1 >> 2).x;
    double u1 = (double)to_uniform(x0);
    const double u2 = (double)to_uniform(x1);
    u1 = u1 > 1e-12 ? u1 : 1e-12;
    const double two_pi = 2.0 * 3.14159265358979311599796346854;  // 2 * f64::consts::PI
    return (float)(sqrt(-2.0 * log(u1)) * cos(two_pi * u2));
}
