//! The committed CRD YAML must be exactly what the types generate.

use std::path::Path;

use wasmplug_crds::generate::{OUTPUTS, REGENERATE_COMMAND, crd_yaml};

#[test]
fn committed_crd_yaml_matches_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let expected = crd_yaml().expect("the CRDs render as YAML");
    for output in OUTPUTS {
        let committed = std::fs::read_to_string(root.join(output)).unwrap_or_default();
        assert!(
            committed == expected,
            "{output} is out of date with crds/src; regenerate it with `{REGENERATE_COMMAND}` and commit the result"
        );
    }
}
