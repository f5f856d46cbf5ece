//! The OS CSPRNG, and uniform choices from it.

/// `count` bytes from the operating system's CSPRNG.
///
/// # Panics
/// When the operating system cannot provide randomness; nothing secure can go on then.
#[allow(
    clippy::expect_used,
    reason = "no safe fallback exists without OS randomness"
)]
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).expect("the OS random number generator failed");
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
