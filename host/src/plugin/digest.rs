//! SHA-256 digests in the form the status contract and the store use:
//! `sha256:<64 lowercase hex digits>`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The SHA-256 digest of some bytes (in practice, of a plugin.wasm).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of everything `hasher` was given (bytes that arrived in pieces).
    pub fn of_hashed(hasher: Sha256) -> Self {
        Digest(hasher.finalize().into())
    }

    /// Whether `text` is a digest in the form [`Digest::hex`] writes it.
    pub fn is_hex(text: &str) -> bool {
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix (store paths use this).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("failed to parse digest {0:?}: expected 64 lowercase hex digits, optionally prefixed with \"sha256:\"")]
pub struct DigestParseError(String);

impl FromStr for Digest {
    type Err = DigestParseError;

    /// Accepts `sha256:<hex>` and bare `<hex>` (the two forms `spec.sha256` allows).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        let invalid = || DigestParseError(text.to_owned());
        if !Digest::is_hex(hex) {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(Digest(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_bytes_round_trips_through_text() {
        let digest = Digest::of(b"");
        assert_eq!(digest.hex(), EMPTY);
        assert_eq!(digest.to_string(), format!("sha256:{EMPTY}"));
        assert_eq!(digest.to_string().parse::<Digest>(), Ok(digest));
        assert_eq!(EMPTY.parse::<Digest>(), Ok(digest));
    }

    #[test]
    fn rejects_other_forms() {
        for text in
            ["", "sha256:", &EMPTY[1..], &EMPTY.to_uppercase(), &format!("sha512:{EMPTY}"), &format!("{EMPTY}0")]
        {
            assert!(text.parse::<Digest>().is_err(), "{text:?}");
        }
    }
}
