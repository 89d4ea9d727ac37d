//! The one `bindgen!` site: host-side bindings for the plugin ABI in `wit/`.
//!
//! Bindings are generated for the richest world, `format-plugin-v2`; a
//! `format-plugin` (v1) component is driven through the `handler` interface
//! alone, which both worlds export.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "format-plugin-v2",
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    // Calls run on a fiber so that a deadline can stop a guest waiting in WASI.
    exports: { default: async },
});

pub use exports::artifact_keeper::format::handler::{self, Metadata};
pub use exports::artifact_keeper::format::request_handler::{self, HttpRequest, HttpResponse, RepoContext};

/// Fully qualified names of the exported interfaces, as they appear in a component.
pub const HANDLER_INTERFACE: &str = "artifact-keeper:format/handler@1.0.0";
pub const REQUEST_HANDLER_INTERFACE: &str = "artifact-keeper:format/request-handler@1.0.0";
