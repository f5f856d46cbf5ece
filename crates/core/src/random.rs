//! Randomness for codes, ids, nonces and keys, and uniform choices from it.
//!
//! Drawn from `rand`'s thread-local generator: ChaCha12 keyed from the operating system's
//! CSPRNG and rekeyed from it after every 64 KiB it gives out, which reliability target 1
//! accepts alongside the operating system's own. Asking the kernel directly cost a system
//! call for each value (about four a resend), in every request's path.

use rand::RngCore as _;

/// `N` random bytes.
///
/// # Panics
/// When the operating system cannot seed the generator; nothing secure can go on then.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::thread_rng().fill_bytes(&mut out);
    out
}

/// `count` characters drawn uniformly from `alphabet` by rejection sampling.
pub fn characters(alphabet: &[u8], count: usize) -> String {
    debug_assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    let len = alphabet.len();
    // Largest multiple of `len` that fits a byte: values at or above it would bias the draw.
    let limit = 256 - (256 % len);
    let mut out = String::with_capacity(count);
    while out.len() < count {
        for byte in bytes::<64>() {
            if usize::from(byte) < limit {
                out.push(char::from(alphabet[usize::from(byte) % len]));
                if out.len() == count {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_cover_the_whole_alphabet_evenly() {
        let alphabet = b"abc";
        let sample = characters(alphabet, 30_000);
        for &letter in alphabet {
            let count = sample.bytes().filter(|&b| b == letter).count();
            assert!((9_000..11_000).contains(&count), "{count}");
        }
    }
}
