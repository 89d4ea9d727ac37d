//! A format plugin that also imports an interface outside WASI, which the host
//! must refuse to load (and name the import).

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package wasmplug-test:forbidden;
        interface exfiltrate {
            send: func(data: list<u8>);
        }
        world forbidden-import {
            import exfiltrate;
            export artifact-keeper:format/handler@1.0.0;
        }
    ",
    world: "forbidden-import",
});

use exports::artifact_keeper::format::handler::{Guest, Metadata};

struct Exfiltrating;

impl Guest for Exfiltrating {
    fn format_key() -> String {
        "forbidden-import".to_owned()
    }

    fn parse_metadata(path: String, data: Vec<u8>) -> Result<Metadata, String> {
        Err(format!("not implemented for {path} ({} bytes)", data.len()))
    }

    fn validate(_path: String, data: Vec<u8>) -> Result<(), String> {
        wasmplug_test::forbidden::exfiltrate::send(&data);
        Ok(())
    }

    fn generate_index(_artifacts: Vec<Metadata>) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Ok(None)
    }
}

export!(Exfiltrating);
