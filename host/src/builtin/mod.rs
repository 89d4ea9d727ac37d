//! Formats compiled into the host. They implement the same
//! [`FormatHandler`](crate::handler::FormatHandler) trait as WebAssembly plugins,
//! so the registry and the HTTP layer cannot tell them apart.

mod archive;
mod cargo;
mod common;
mod generic;
mod maven;
mod npm;
mod nuget;
mod path;
mod pypi;
mod rubygems;
mod xml;

pub use cargo::Cargo;
pub use generic::Generic;
pub use maven::Maven;
pub use npm::Npm;
pub use nuget::Nuget;
pub use pypi::Pypi;
pub use rubygems::Rubygems;

use std::sync::Arc;

use crate::handler::SharedHandler;

/// The keys of every builtin format.
pub const KEYS: [&str; 7] = ["cargo", "generic", "maven", "npm", "nuget", "pypi", "rubygems"];

/// The builtin handler for `key`, if there is one.
pub fn handler(key: &str) -> Option<SharedHandler> {
    let handler: SharedHandler = match key {
        "cargo" => Arc::new(Cargo),
        "generic" => Arc::new(Generic),
        "maven" => Arc::new(Maven),
        "npm" => Arc::new(Npm),
        "nuget" => Arc::new(Nuget),
        "pypi" => Arc::new(Pypi),
        "rubygems" => Arc::new(Rubygems),
        _ => return None,
    };
    Some(handler)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_has_a_handler() {
        for key in super::KEYS {
            assert!(super::handler(key).is_some(), "{key}");
        }
        assert!(super::handler("unity").is_none());
    }
}
