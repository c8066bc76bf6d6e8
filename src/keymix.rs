//! A keyed, invertible permutation of 64-bit slot keys.
//!
//! Raw slot keys are `version << 32 | kind | index`, and fresh slots all start at version 1,
//! so flipping one index bit of a raw key would name the neighbouring object. Handles
//! therefore carry `mix(raw)`, and the owner decodes with `unmix`. `mix` is a bijection
//! (multiply by an odd secret, then xor the high half into the low half, which is its own
//! inverse), so decoding is exact: three instructions and a multiplication on every call.
//! Decoding folds the key's high half into its low half and multiplies by the inverse, which
//! carries every bit from its position upwards: every bit of the key reaches both the index
//! and the version, and the multiplier is drawn so that flipping any one bit of a key changes
//! the decoded version (`scatters`), so a bit-flipped key never names a neighbour with the
//! same version. A forged key resolves only if it decodes to a live slot's exact word
//! (index, kind and version): for a table of `n` live objects, `n` of the 2^64 values
//! (SECURITY.md gives the argument).
//!
//! Each thread mixes with its own multiplier ([`KeyMix::for_thread`]): tables hand out the same
//! raw keys on every thread, so with one shared permutation a handle whose owner field had a
//! bit flipped would name the other thread's object with the same raw key. With a per-thread
//! multiplier, a key minted on thread A decodes on thread B to an unrelated raw key.
//!
//! The secret is drawn once per process from the standard library's randomly seeded hasher;
//! each thread derives its variant when it first enters and keeps it in its own state, so the
//! hot path reads no shared memory.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// The per-process secret of the permutation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyMix {
    /// What thread variants are derived from.
    secret: u64,
    mul: u64,
    mul_inverse: u64,
}

impl KeyMix {
    /// The process-wide secret, created on first use.
    pub(crate) fn process() -> KeyMix {
        static SECRET: OnceLock<KeyMix> = OnceLock::new();
        *SECRET.get_or_init(KeyMix::random)
    }

    /// A permutation with a fresh random secret (the shared-handle registries each draw one).
    pub(crate) fn random() -> KeyMix {
        KeyMix::from_seed(random_u64(), random_u64())
    }

    /// The variant of this permutation used by thread `thread_id`: its own multiplier.
    pub(crate) fn for_thread(&self, thread_id: u64) -> KeyMix {
        KeyMix::from_seed(self.secret, splitmix64(thread_id ^ self.secret))
    }

    /// A permutation from explicit seeds (tests use fixed seeds for reproducibility): `secret`
    /// for its thread variants, `seed` for its multiplier.
    pub(crate) fn from_seed(secret: u64, seed: u64) -> KeyMix {
        // Decoding multiplies by `mul_inverse`, so it is the one drawn: odd (invertible modulo
        // 2^64), and redrawn until every single-bit flip changes the version (`scatters`).
        let mut draw = seed;
        let mul_inverse = loop {
            let candidate = splitmix64(draw) | 1;
            if scatters(candidate) {
                break candidate;
            }
            draw = draw.wrapping_add(1);
        };
        KeyMix { secret, mul: inverse_mod_2_64(mul_inverse), mul_inverse }
    }

    /// Raw slot key to the value a handle carries.
    #[inline]
    pub(crate) fn mix(&self, raw: u64) -> u64 {
        fold(raw.wrapping_mul(self.mul))
    }

    /// The value a handle carries back to the raw slot key; exact inverse of [`KeyMix::mix`].
    #[inline(always)]
    pub(crate) fn unmix(&self, mixed: u64) -> u64 {
        fold(mixed).wrapping_mul(self.mul_inverse)
    }
}

/// Xors the high half of `x` into its low half: its own inverse.
#[inline(always)]
fn fold(x: u64) -> u64 {
    x ^ (x >> 32)
}

/// Whether flipping any one bit of a handle's key changes its decoded version (the high 32
/// bits of `fold(key) * multiplier`). Flipping bit `b` of the key flips bit `b` of the fold,
/// and bit `b - 32` too if `b >= 32`, so it adds to the fold one of `±2^b` or `±2^b ± 2^(b-32)`,
/// and to the product that times the multiplier. With a carry or a borrow from the low half,
/// which moves the high half by at most one, the high half stays the same only if the high
/// half of what was added is all zeros or all ones: the multiplier is refused if any of those
/// 384 additions has such a high half (about one draw in 2^22).
fn scatters(multiplier: u64) -> bool {
    let high_moves = |change: u64| {
        let high = (change.wrapping_mul(multiplier) >> 32) as u32;
        high != 0 && high != u32::MAX
    };
    (0..64u32).all(|bit| {
        let flip = 1u64 << bit;
        let with = if bit >= 32 { [1u64 << (bit - 32), 0u64.wrapping_sub(1 << (bit - 32))] } else { [0, 0] };
        [flip, flip.wrapping_neg()].iter().all(|&main| with.iter().all(|&low| high_moves(main.wrapping_add(low))))
    })
}

/// Multiplicative inverse of an odd number modulo 2^64 (Newton's iteration; each step doubles
/// the number of correct low bits, 3 -> 6 -> 12 -> 24 -> 48 -> 96).
fn inverse_mod_2_64(odd: u64) -> u64 {
    debug_assert!(odd & 1 == 1);
    let mut inverse = odd; // correct to 3 bits for any odd number
    for _ in 0..5 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
    }
    inverse
}

/// A strong 64-bit finaliser (splitmix64): distinct inputs give unrelated outputs.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(std::process::id() as u64);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_a_bijection_on_samples_and_unmix_inverts_it() {
        let m = KeyMix::from_seed(1, 3);
        let mut x = 0x0123_4567_89ab_cdefu64;
        let samples = if cfg!(miri) { 1_000 } else { 100_000 }; // Miri: fewer, same code
        for _ in 0..samples {
            assert_eq!(m.unmix(m.mix(x)), x);
            assert_eq!(m.mix(m.unmix(x)), x);
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        for special in [0, 1, u64::MAX, 1 << 32, (1 << 32) | 1] {
            assert_eq!(m.unmix(m.mix(special)), special);
        }
    }

    #[test]
    fn single_bit_flips_of_a_mixed_key_scatter_the_raw_key() {
        // Flipping one bit of a handle's key must not land on a nearby raw key (a neighbour
        // slot with the same version). Require every flip to change the version half.
        // Fixed seeds keep the test deterministic; `process()` secrets behave alike.
        let indices = if cfg!(miri) { 50 } else { 2000u64 }; // Miri: fewer, same code
        for seed in 0..if cfg!(miri) { 2 } else { 16u64 } {
            let m = KeyMix::from_seed(0x1234_5678 ^ splitmix64(seed), splitmix64(0xdead_beef ^ seed));
            for index in 1..indices {
                let raw = (1u64 << 32) | index; // version 1, as every fresh slot has
                let mixed = m.mix(raw);
                for bit in 0..64 {
                    let decoded = m.unmix(mixed ^ (1 << bit));
                    assert_ne!(decoded >> 32, 1, "seed {seed}: flip of bit {bit} kept version for index {index}");
                }
            }
        }
    }

    #[test]
    fn a_key_minted_on_one_thread_scatters_on_every_other() {
        let process = KeyMix::from_seed(11, 13);
        let threads = if cfg!(miri) { 30 } else { 200u64 }; // Miri: fewer, same code
        for owner in 1..threads {
            let minted = process.for_thread(owner).mix((1 << 32) | 1); // first slot, version 1
            for other in (1..threads).filter(|&other| other != owner) {
                let decoded = process.for_thread(other).unmix(minted);
                assert_ne!(decoded >> 32, 1, "thread {other} decodes thread {owner}'s first key to version 1");
            }
        }
    }

    #[test]
    fn multipliers_that_would_keep_a_flipped_key_version_are_redrawn() {
        // Bit 3 flipped adds 8 * multiplier: with bits 29..61 of the multiplier all zero, the
        // high half of that is zero, and so the version would stay.
        assert!(!scatters(0x8000_0000_0000_0001 | (1 << 28)));
        assert!(!scatters(u64::MAX));
        assert!(!scatters(1));
        for seed in 0..if cfg!(miri) { 20 } else { 10_000u64 } {
            let m = KeyMix::from_seed(seed, seed);
            assert!(scatters(m.mul_inverse), "seed {seed}");
            assert_eq!(m.mul.wrapping_mul(m.mul_inverse), 1, "seed {seed}");
        }
    }

    #[test]
    fn every_bit_of_a_key_reaches_the_index() {
        // The fold carries the key's high half into the index: no flip of a key keeps its slot
        // (a flip adds an odd multiple of 2^b, b < 32, to the low half of the product).
        let m = KeyMix::from_seed(5, 6);
        for index in 0..if cfg!(miri) { 20 } else { 1000u64 } {
            let mixed = m.mix((1 << 32) | index);
            for bit in 0..64 {
                let decoded = m.unmix(mixed ^ (1 << bit));
                assert_ne!(decoded as u32, index as u32, "flip of bit {bit} kept index {index}");
            }
        }
    }

    #[test]
    fn inverse_is_exact() {
        for odd in [1u64, 3, 5, 0x9e37_79b9_7f4a_7c15, u64::MAX] {
            assert_eq!(odd.wrapping_mul(inverse_mod_2_64(odd)), 1);
        }
    }
}
