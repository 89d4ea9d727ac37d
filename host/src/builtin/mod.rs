//! Formats compiled into the host. They implement the same
//! [`FormatHandler`](crate::handler::FormatHandler) trait as WebAssembly plugins.

mod generic;
mod path;

pub use generic::Generic;

use crate::handler::SharedHandler;

/// The keys of every builtin format.
pub const KEYS: [&str; 1] = ["generic"];

/// The builtin handler for `key`, if there is one.
pub fn handler(key: &str) -> Option<SharedHandler> {
    match key {
        "generic" => Some(std::sync::Arc::new(Generic)),
        _ => None,
    }
}
