//! The wasmplug operator: reconciles `FormatPlugin`s by fetching the plugin
//! package ([`fetch`]), validating it with the host's own rules ([`validate`]),
//! publishing it into the shared store ([`store`]) and reporting status
//! ([`status`]). [`controller`] drives those steps; [`fleet`] rolls the hosts'
//! records of what they serve up into each FormatPlugin; [`leader`] makes sure only one
//! replica does; [`serve`] exposes metrics and health; [`artifacts`] serves
//! the store to hosts; [`webhook`] serves the admission webhook that applies
//! [`policy`] when objects change.

pub mod artifacts;
pub mod controller;
pub mod events;
pub mod fetch;
pub mod fleet;
pub mod leader;
pub mod metrics;
pub mod mirror;
pub mod policy;
pub mod serve;
pub mod source_url;
pub mod status;
pub mod store;
pub mod validate;
pub mod verify;
pub mod webhook;
