//! Reads the layout of a `.unitypackage`: a gzipped tar of one directory per asset,
//! named by the asset's GUID (32 lowercase hex digits).

use std::collections::BTreeMap;
use std::io::Read;

/// One asset of a package.
#[derive(Debug, Default, PartialEq)]
pub struct Asset {
    /// Where the asset goes in the Unity project, from `<guid>/pathname`.
    pub pathname: String,
    /// Whether `<guid>/asset` is present (folders have none).
    pub has_content: bool,
}

/// The assets of a package by GUID, or why the bytes are not a Unity package.
pub fn read(data: &[u8]) -> Result<BTreeMap<String, Asset>, String> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Err("not a Unity package: the file is not gzip-compressed".to_owned());
    }
    let mut archive = tar::Archive::new(flate2::bufread::GzDecoder::new(data));
    let entries = archive.entries().map_err(|e| format!("not a Unity package: unreadable tar archive: {e}"))?;
    let mut assets: BTreeMap<String, Asset> = BTreeMap::new();
    let mut has_meta = BTreeMap::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a Unity package: corrupt tar entry: {e}"))?;
        let name = entry.path().map_err(|e| format!("bad entry name: {e}"))?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").trim_end_matches('/');
        if name.is_empty() || name == "." {
            continue; // the archive's root directory entry
        }
        let (guid, file) = name.split_once('/').unwrap_or((name, ""));
        if !is_guid(guid) {
            return Err(format!("entry {name:?} is not inside a <guid>/ directory (32 hex digits)"));
        }
        let asset = assets.entry(guid.to_owned()).or_default();
        match file {
            "" => {}
            "asset" => asset.has_content = true,
            "asset.meta" => {
                has_meta.insert(guid.to_owned(), true);
            }
            "preview.png" => {}
            "pathname" => {
                let mut text = String::new();
                entry.read_to_string(&mut text).map_err(|e| format!("{name} is not UTF-8 text: {e}"))?;
                let pathname = text.lines().next().unwrap_or("").trim().to_owned();
                if pathname.is_empty() {
                    return Err(format!("{name} is empty"));
                }
                asset.pathname = pathname;
            }
            other => return Err(format!("unexpected entry {guid}/{other}")),
        }
    }
    for (guid, asset) in &assets {
        if asset.pathname.is_empty() {
            return Err(format!("asset {guid} has no pathname entry"));
        }
        if !has_meta.contains_key(guid) {
            return Err(format!("asset {guid} ({}) has no asset.meta entry", asset.pathname));
        }
    }
    Ok(assets)
}

fn is_guid(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}
