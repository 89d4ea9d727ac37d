//! Writes the generated CRD YAML to every file in `generate::OUTPUTS`.
//!
//! Run from anywhere inside the repository: `cargo run -p wasmplug-crds --bin crdgen`.

use std::path::Path;

use anyhow::Context;
use wasmplug_crds::generate::{OUTPUTS, crd_yaml};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let yaml = crd_yaml()?;
    for output in OUTPUTS {
        let path = root.join(output);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        std::fs::write(&path, &yaml).with_context(|| format!("failed to write {}", path.display()))?;
        println!("wrote {output}");
    }
    Ok(())
}
