//! The wasmplug operator: reconciles `FormatPlugin`s by fetching the plugin
//! package, validating it with the host's own rules (`wasmplug_host::plugin` and
//! `wasmplug_host::runtime`), publishing it into the shared store, and reporting
//! status. It grows module by module: [`store`] first.

pub mod store;
