//! The artifact's header: `Field: value` lines up to the first blank line.
//! Name and Version are required, and the artifact's file name must be
//! `<name>-<version>` and the format's extension.

/// What an artifact's header says.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub version: String,
}

/// The header of the artifact `data` stored at `path`, or why the artifact is
/// refused: the registry shows this message to whoever uploaded it.
pub fn check(path: &str, data: &[u8]) -> Result<Header, String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let Some(stem) = file.strip_suffix(crate::EXTENSION) else {
        return Err(format!("{path:?} must end with {}", crate::EXTENSION));
    };
    let end = data
        .windows(2)
        .position(|pair| pair == b"\n\n")
        .ok_or("the artifact has no header: it must start with Name: and Version: lines and a blank line")?;
    let text = std::str::from_utf8(&data[..end]).map_err(|_| "the header is not UTF-8 text".to_owned())?;
    let field = |wanted: &str| {
        text.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("the header has no {wanted}: line"))
    };
    let header = Header { name: field("Name")?, version: field("Version")? };
    if stem != format!("{}-{}", header.name, header.version) {
        return Err(format!(
            "{path:?} must be named {}-{}{}, as its header says",
            header.name,
            header.version,
            crate::EXTENSION
        ));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::{Header, check};

    const SAMPLE: &[u8] = include_bytes!("../samples/{{sample}}");

    #[test]
    fn the_sample_is_accepted() {
        let header = check("{{sample}}", SAMPLE).expect("the sample is valid");
        assert_eq!(header, Header { name: "hello".to_owned(), version: "1.0.0".to_owned() });
    }

    #[test]
    fn every_refusal_says_what_is_wrong() {
        let refusal = |path: &str, data: &[u8]| check(path, data).expect_err("refused");
        assert!(refusal("hello-1.0.0.zip", SAMPLE).contains("must end with {{extension}}"));
        assert!(refusal("{{sample}}", b"no header").contains("no header"));
        assert!(refusal("{{sample}}", b"Name: hello\n\nbody").contains("no Version: line"));
        assert!(refusal("hello-2.0.0{{extension}}", SAMPLE).contains("must be named {{sample}}"));
    }
}
