//! Native code for this engine, and how a loaded plugin came to be compiled.
//!
//! A [`Precompiled`] can only be made from bytes whose SHA-256 is known to be
//! the expected one: compiled by this process, or read back and checked against
//! the digest the operator published. That is what makes deserializing it (which
//! runs the native code in it) acceptable.

use crate::plugin::Digest;

/// Native code compiled ahead of time for one engine, with its digest.
#[derive(Clone)]
pub struct Precompiled {
    bytes: Vec<u8>,
    digest: Digest,
}

impl std::fmt::Debug for Precompiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Precompiled").field("digest", &self.digest).field("size", &self.bytes.len()).finish()
    }
}

impl Precompiled {
    /// Bytes this process just compiled.
    pub(super) fn made_here(bytes: Vec<u8>) -> Self {
        Precompiled { digest: Digest::of(&bytes), bytes }
    }

    /// Bytes read from elsewhere, accepted only when their digest is `expected`;
    /// otherwise the digest they have.
    pub(crate) fn checked(bytes: Vec<u8>, expected: Digest) -> Result<Self, Digest> {
        let digest = Digest::of(&bytes);
        if digest != expected {
            return Err(digest);
        }
        Ok(Precompiled { bytes, digest })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// How a loaded plugin's code was produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compilation {
    /// From the operator's verified precompiled file.
    Precompiled,
    /// From plugin.wasm on this host; `reason` says why the precompiled file was not used.
    Compiled { reason: String },
}
