//! Human text on a link.

use crate::error::Error;

fn parse_text(raw: &str, field: &str, max: usize) -> Result<String, Error> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::validation(field, "must not be empty"));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(Error::validation(
            field,
            format!("must be at most {max} characters, got {chars}"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

/// The link's name as payers see it: 1..=160 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkName(String);

impl LinkName {
    pub const MAX_CHARS: usize = 160;

    pub fn parse(raw: &str, field: &str) -> Result<Self, Error> {
        parse_text(raw, field, Self::MAX_CHARS).map(LinkName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A longer description: 1..=500 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str, field: &str) -> Result<Self, Error> {
        parse_text(raw, field, Self::MAX_CHARS).map(Description)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_non_empty_and_bounded() {
        assert_eq!(
            LinkName::parse("  Dinner  ", "name").unwrap().as_str(),
            "Dinner"
        );
        assert_eq!(
            LinkName::parse("   ", "name").unwrap_err().field(),
            Some("name")
        );
        assert!(LinkName::parse(&"x".repeat(160), "name").is_ok());
        assert!(LinkName::parse(&"x".repeat(161), "name").is_err());
        assert!(LinkName::parse("a\u{7}b", "name").is_err());
        assert!(LinkName::parse("عشاء", "name").is_ok());
    }

    #[test]
    fn descriptions_allow_newlines() {
        assert!(Description::parse("line one\nline two", "description").is_ok());
        assert!(Description::parse(&"é".repeat(501), "description").is_err());
    }
}
