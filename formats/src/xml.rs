//! The little XML reading the builtin formats need: check the root element and
//! take the text of elements at given paths, through quick-xml, on documents
//! anyone can upload.
//!
//! Every document is read under fixed caps (nesting depth, element count,
//! attributes per element) and the root element is checked at the first start
//! tag, so a hostile document costs a bounded amount of memory and time before it
//! is refused. Attributes are counted without quick-xml's duplicate check, whose
//! cost grows with the square of their number.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::budget::{Budget, Refusal};

/// Deepest element nesting accepted (POMs and nuspecs nest a handful deep).
pub const MAX_DEPTH: usize = 64;
/// Most elements in one document (a large POM has a few thousand).
pub const MAX_ELEMENTS: usize = 100_000;
/// Most attributes, namespace declarations included, on one element.
pub const MAX_ATTRIBUTES: usize = 256;

/// Walks `text`, checks that its root element is `root` (namespace prefixes are
/// ignored) and returns the text content of each element whose path from the
/// root (e.g. `["package", "metadata", "id"]`) is in `paths`, in the order of
/// `paths`.
pub fn read(text: &str, root: &str, paths: &[&[&str]], budget: &Budget) -> Result<Vec<Option<String>>, Refusal> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0usize;
    let mut found: Vec<Option<String>> = vec![None; paths.len()];
    loop {
        let event =
            reader.read_event().map_err(|e| format!("invalid XML at byte {}: {e}", reader.buffer_position()))?;
        let start = match &event {
            Event::Start(start) | Event::Empty(start) => Some(start),
            _ => None,
        };
        if let Some(start) = start {
            elements += 1;
            if elements.is_multiple_of(1024) {
                budget.check_time()?;
            }
            let name = checked_element(start, elements, stack.is_empty().then_some(root))?;
            if matches!(event, Event::Start(_)) {
                if stack.len() == MAX_DEPTH {
                    return Err(format!("the document nests elements more than {MAX_DEPTH} deep").into());
                }
                stack.push(name);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(text) => {
                if let Some(at) = paths.iter().position(|p| stack.iter().map(String::as_str).eq(p.iter().copied())) {
                    found[at].get_or_insert_with(|| text.xml10_content().trim().to_owned());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if elements == 0 {
        return Err("the document has no root element".into());
    }
    Ok(found)
}

/// The local name of the `count`-th element, after checking the caps and, for
/// the root element, that it is the expected one.
fn checked_element(start: &BytesStart<'_>, count: usize, expected_root: Option<&str>) -> Result<String, String> {
    if count > MAX_ELEMENTS {
        return Err(format!("the document has more than {MAX_ELEMENTS} elements"));
    }
    let name = start.local_name().as_ref().to_owned();
    if let Some(root) = expected_root.filter(|root| *root != name) {
        return Err(format!("the root element is <{name}>, not <{root}>"));
    }
    if start.attributes().with_checks(false).nth(MAX_ATTRIBUTES).is_some() {
        return Err(format!("element <{name}> has more than {MAX_ATTRIBUTES} attributes"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Limits;

    fn read(text: &str, root: &str, paths: &[&[&str]]) -> Result<Vec<Option<String>>, String> {
        super::read(text, root, paths, &Budget::new(Limits::DEFAULT)).map_err(|refusal| refusal.to_string())
    }

    const PATHS: &[&[&str]] = &[&["package", "metadata", "id"], &["package", "metadata", "version"]];

    #[test]
    fn finds_paths_under_the_expected_root() {
        let xml = r#"<?xml version="1.0"?><package xmlns="x"><metadata><id>Newtonsoft.Json</id><version>13.0.3</version></metadata></package>"#;
        assert_eq!(read(xml, "package", PATHS).unwrap(), [Some("Newtonsoft.Json".into()), Some("13.0.3".into())]);
        assert!(read("<package><b></package>", "package", &[]).is_err());
        assert_eq!(read("<!-- nothing -->", "package", &[]).unwrap_err(), "the document has no root element");
    }

    #[test]
    fn the_root_is_checked_at_the_first_start_tag() {
        // Everything after the wrong root is never read: the broken rest would
        // otherwise be the error.
        let error = read("<project><<<<not xml", "package", &[]).expect_err("wrong root");
        assert_eq!(error, "the root element is <project>, not <package>");
    }

    /// RUSTSEC-2026-0194's pattern: one element with a huge number of duplicate
    /// attributes (quadratic in quick-xml's duplicate check).
    #[test]
    fn refuses_an_element_with_thousands_of_duplicate_attributes() {
        let attributes = " a=\"1\"".repeat(100_000);
        let error = read(&format!("<package{attributes}/>"), "package", &[]).expect_err("refused");
        assert_eq!(error, format!("element <package> has more than {MAX_ATTRIBUTES} attributes"));
    }

    /// RUSTSEC-2026-0195's pattern: unbounded namespace declarations.
    #[test]
    fn refuses_an_element_with_thousands_of_namespace_declarations() {
        let declarations: String = (0..100_000).map(|i| format!(" xmlns:p{i}=\"urn:{i}\"")).collect();
        let xml = format!("<package><metadata{declarations}><id>x</id></metadata></package>");
        let error = read(&xml, "package", PATHS).expect_err("refused");
        assert_eq!(error, format!("element <metadata> has more than {MAX_ATTRIBUTES} attributes"));
    }

    #[test]
    fn refuses_deep_nesting_and_too_many_elements() {
        let deep = format!("<project>{}", "<a>".repeat(1_000_000));
        assert_eq!(read(&deep, "project", &[]).unwrap_err(), "the document nests elements more than 64 deep");
        let wide = format!("<project>{}</project>", "<a/>".repeat(MAX_ELEMENTS + 1));
        assert_eq!(read(&wide, "project", &[]).unwrap_err(), "the document has more than 100000 elements");
    }
}
