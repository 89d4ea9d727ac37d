//! `new`: a plugin crate that builds on its own, outside this repository,
//! from the templates in `cli/templates/plugin/` and this repository's WIT.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wasmplug_crds::is_valid_format_key;

/// The wit-bindgen the examples are built with (examples/Cargo.lock), pinned
/// exactly so a new plugin builds as they do.
pub const WIT_BINDGEN_VERSION: &str = "0.61.1";

/// The contract plugins implement, copied into every new plugin.
const WIT: &str = include_str!("../../wit/format.wit");

/// Every file of a new plugin: its path in the crate, and its template.
const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/plugin/Cargo.toml")),
    ("plugin.toml", include_str!("../templates/plugin/plugin.toml")),
    ("README.md", include_str!("../templates/plugin/README.md")),
    (".gitignore", include_str!("../templates/plugin/.gitignore")),
    (".cargo/config.toml", include_str!("../templates/plugin/.cargo/config.toml")),
    ("src/lib.rs", include_str!("../templates/plugin/src/lib.rs")),
    ("src/header.rs", include_str!("../templates/plugin/src/header.rs")),
    ("wit/format.wit", WIT),
];

/// Only format-plugin-v2 plugins have it.
const REQUEST_TEMPLATE: (&str, &str) = ("src/request.rs", include_str!("../templates/plugin/src/request.rs"));

/// The sample artifact, written as `samples/hello-1.0.0<extension>`.
const SAMPLE: &str = include_str!("../templates/plugin/samples/sample");

/// What `wasmplug new` is asked for.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The format key: lowercase letters, digits and single hyphens (e.g. acme).
    /// Artifacts get the extension .<key>; change it in plugin.toml and src/lib.rs.
    key: String,
    /// Also serve the format's client protocol (the format-plugin-v2 world:
    /// handle-request).
    #[arg(long)]
    v2: bool,
    /// Where to make the crate; defaults to ./<key>-format. It must not exist,
    /// or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn new(args: &NewArgs) -> anyhow::Result<String> {
    let key = args.key.as_str();
    if !is_valid_format_key(key) {
        bail!("{key:?} is not a format key: use lowercase letters, digits and single hyphens, e.g. acme");
    }
    // The plugin's name follows the same rule as keys; at the longest key, the key itself.
    let crate_name = Some(format!("{key}-format")).filter(|name| is_valid_format_key(name)).unwrap_or(key.to_owned());
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&crate_name));
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("{} already exists and is not empty; give another --dir", dir.display());
    }
    let sample = format!("hello-1.0.0.{key}");
    let values = placeholders(key, &crate_name, &sample, args.v2);
    let sample_file = format!("samples/{sample}");
    let files =
        TEMPLATES.iter().copied().chain(args.v2.then_some(REQUEST_TEMPLATE)).chain([(sample_file.as_str(), SAMPLE)]);
    for (file, template) in files {
        write(&dir.join(file), &render(template, &values))?;
    }
    let at = dir.display();
    let world = world(args.v2);
    Ok(format!(
        "made {crate_name} in {at}: the {key} format ({world}). Next:\n  \
         cd {at}\n  \
         wasmplug build\n  \
         wasmplug call target/wasmplug/{crate_name} metadata samples/{sample}\n  \
         wasmplug-host --plugins-dir target/wasmplug"
    ))
}

/// The WIT world a new plugin targets.
fn world(v2: bool) -> &'static str {
    if v2 { "format-plugin-v2" } else { "format-plugin" }
}

/// What each `{{placeholder}}` of the templates stands for.
fn placeholders(key: &str, crate_name: &str, sample: &str, v2: bool) -> Vec<(&'static str, String)> {
    let (request_module, request_readme) = if v2 {
        ("mod request;\n", "- `src/request.rs`: the format's own client protocol (handle-request).\n")
    } else {
        ("", "")
    };
    [
        ("{{crate}}", crate_name),
        ("{{key}}", key),
        ("{{extension}}", &format!(".{key}")),
        ("{{sample}}", sample),
        ("{{display_name}}", &format!("{} artifacts", key.to_uppercase())),
        ("{{content_type}}", "application/octet-stream"),
        ("{{world}}", world(v2)),
        ("{{handle_request}}", if v2 { "true" } else { "false" }),
        ("{{request_module}}", request_module),
        ("{{request_readme}}", request_readme),
        ("{{wit_bindgen}}", WIT_BINDGEN_VERSION),
        ("{{wasmplug_version}}", env!("CARGO_PKG_VERSION")),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_owned()))
    .collect()
}

fn render(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_owned(), |text, (name, value)| text.replace(name, value))
}

fn write(file: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
    }
    std::fs::write(file, text).with_context(|| format!("failed to write {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::WIT_BINDGEN_VERSION;

    #[test]
    fn new_plugins_pin_the_wit_bindgen_the_examples_build_with() {
        let lock = include_str!("../../examples/Cargo.lock");
        let pinned = format!("name = \"wit-bindgen\"\nversion = \"{WIT_BINDGEN_VERSION}\"");
        assert!(lock.contains(&pinned), "examples/Cargo.lock has no {pinned:?}: update WIT_BINDGEN_VERSION");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let values = super::placeholders("acme", "acme-format", "hello-1.0.0.acme", true);
        for (file, template) in super::TEMPLATES.iter().chain([&super::REQUEST_TEMPLATE]) {
            let text = super::render(template, &values);
            assert!(!text.contains("{{"), "{file} keeps a placeholder: {text}");
        }
    }
}
