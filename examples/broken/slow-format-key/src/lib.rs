//! A plugin whose `format-key` sleeps 20 s. Hosts and the operator call it while
//! loading, so it tests that a load is bounded in time and never holds up the
//! loading of other plugins, disables or readiness.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "format-plugin",
});

use exports::artifact_keeper::format::handler::{Guest, Metadata};

struct SlowFormatKey;

impl Guest for SlowFormatKey {
    fn format_key() -> String {
        std::thread::sleep(std::time::Duration::from_secs(20));
        "slow-format-key".to_owned()
    }

    fn parse_metadata(_path: String, _data: Vec<u8>) -> Result<Metadata, String> {
        Err("never loaded".to_owned())
    }

    fn validate(_path: String, _data: Vec<u8>) -> Result<(), String> {
        Ok(())
    }

    fn generate_index(_artifacts: Vec<Metadata>) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Ok(None)
    }
}

export!(SlowFormatKey);
