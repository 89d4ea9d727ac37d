//! The little XML reading the builtin formats need: the root element's name and
//! the text of elements at given paths, through quick-xml.

use quick_xml::Reader;
use quick_xml::events::Event;

/// Walks `text` and returns the root element name and the text content of each
/// element whose path from the root (e.g. `["package", "metadata", "id"]`) is in
/// `paths`, in the order of `paths`. Namespace prefixes are ignored.
pub fn read(text: &str, paths: &[&[&str]]) -> Result<(String, Vec<Option<String>>), String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<String> = Vec::new();
    let mut root = None;
    let mut found: Vec<Option<String>> = vec![None; paths.len()];
    loop {
        match reader.read_event().map_err(|e| format!("invalid XML at byte {}: {e}", reader.buffer_position()))? {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                root.get_or_insert_with(|| name.clone());
                stack.push(name);
            }
            Event::Empty(start) => {
                root.get_or_insert_with(|| String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(text) => {
                if let Some(at) = paths.iter().position(|p| stack.iter().map(String::as_str).eq(p.iter().copied())) {
                    let value = text.decode().map_err(|e| format!("invalid XML text: {e}"))?;
                    found[at].get_or_insert_with(|| value.trim().to_owned());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let root = root.ok_or("the document has no root element")?;
    Ok((root, found))
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn finds_root_and_paths() {
        let xml = r#"<?xml version="1.0"?><package xmlns="x"><metadata><id>Newtonsoft.Json</id><version>13.0.3</version></metadata></package>"#;
        let (root, found) = read(xml, &[&["package", "metadata", "id"], &["package", "metadata", "version"]]).unwrap();
        assert_eq!(root, "package");
        assert_eq!(found, [Some("Newtonsoft.Json".into()), Some("13.0.3".into())]);
        assert!(read("<a><b></a>", &[]).is_err());
    }
}
