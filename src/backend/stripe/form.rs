//! Stripe's form encoding: `application/x-www-form-urlencoded` pairs whose keys spell out a
//! nested structure with brackets (`line_items[0][price]`, `metadata[order]`, `expand[]`).
//!
//! Structure is built as a [`Node`] tree and flattened once, so no caller ever formats a bracket
//! by hand. Keys and values are percent-encoded by `form_urlencoded` (reached through `url`, which
//! re-exports it, so it adds no dependency): it implements the WHATWG urlencoded serializer
//! exactly (space as `+`, every byte outside `*-._` and alphanumerics escaped, brackets included),
//! which is what Stripe's servers decode; a hand-written encoder would be one more place for an
//! `&` or `=` in a metadata value to corrupt a request.
//!
//! It encodes only: it must not know any Stripe parameter (see `request`, which builds the trees).

use std::fmt;

/// A value to encode: a scalar, or structure that becomes bracketed keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// `key=value`.
    Scalar(String),
    /// `key[name]=...` for each entry, in order.
    Map(Vec<(String, Node)>),
    /// `key[0]=...`, `key[1]=...`: Stripe's arrays of objects in bodies (`line_items`).
    List(Vec<Node>),
    /// `key[]=a&key[]=b`: Stripe's arrays of strings in queries (`expand[]`).
    Repeated(Vec<String>),
}

impl Node {
    /// A map node from `(name, value)` pairs.
    pub(crate) fn map<K, V, I>(entries: I) -> Node
    where
        K: Into<String>,
        V: Into<Node>,
        I: IntoIterator<Item = (K, V)>,
    {
        Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<&str> for Node {
    fn from(s: &str) -> Self {
        Node::Scalar(s.to_owned())
    }
}

impl From<String> for Node {
    fn from(s: String) -> Self {
        Node::Scalar(s)
    }
}

impl From<bool> for Node {
    fn from(b: bool) -> Self {
        Node::Scalar(if b { "true" } else { "false" }.to_owned())
    }
}

impl From<u32> for Node {
    fn from(n: u32) -> Self {
        Node::Scalar(n.to_string())
    }
}

impl From<usize> for Node {
    fn from(n: usize) -> Self {
        Node::Scalar(n.to_string())
    }
}

impl From<i64> for Node {
    fn from(n: i64) -> Self {
        Node::Scalar(n.to_string())
    }
}

/// A key that would change the structure it is part of: Stripe would read `a[b]` inside a map
/// name as two levels, so such a name is refused rather than sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadKey(pub String);

impl fmt::Display for BadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` cannot be a form key: it is empty or contains `[` or `]`",
            self.0.chars().take(60).collect::<String>()
        )
    }
}

/// An ordered list of flattened `(key, value)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

fn check_name(name: &str) -> Result<(), BadKey> {
    if name.is_empty() || name.contains(['[', ']']) {
        Err(BadKey(name.to_owned()))
    } else {
        Ok(())
    }
}

impl Form {
    pub(crate) fn new() -> Self {
        Form::default()
    }

    /// Adds a top-level field. An empty map or list adds nothing (Stripe reads an explicit empty
    /// value as "unset", which this server never means).
    pub(crate) fn add(&mut self, name: &str, node: impl Into<Node>) -> Result<&mut Self, BadKey> {
        check_name(name)?;
        let mut out = Vec::new();
        flatten(name.to_owned(), node.into(), &mut out)?;
        self.pairs.extend(out);
        Ok(self)
    }

    /// Builder form of [`Form::add`].
    pub(crate) fn with(mut self, name: &str, node: impl Into<Node>) -> Result<Self, BadKey> {
        self.add(name, node)?;
        Ok(self)
    }

    #[cfg(test)]
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The urlencoded text: a request body, or a query string without its `?`.
    pub(crate) fn encode(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs.iter())
            .finish()
    }
}

fn flatten(key: String, node: Node, out: &mut Vec<(String, String)>) -> Result<(), BadKey> {
    match node {
        Node::Scalar(v) => out.push((key, v)),
        Node::Map(entries) => {
            for (name, child) in entries {
                check_name(&name)?;
                flatten(format!("{key}[{name}]"), child, out)?;
            }
        }
        Node::List(items) => {
            for (i, child) in items.into_iter().enumerate() {
                flatten(format!("{key}[{i}]"), child, out)?;
            }
        }
        Node::Repeated(values) => {
            for v in values {
                out.push((format!("{key}[]"), v));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(form: &Form) -> Vec<(String, String)> {
        url::form_urlencoded::parse(form.encode().as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn scalars_encode_as_plain_pairs() {
        let f = Form::new()
            .with("currency", "usd")
            .and_then(|f| f.with("active", false))
            .and_then(|f| f.with("limit", 10u32))
            .unwrap();
        assert_eq!(f.encode(), "currency=usd&active=false&limit=10");
    }

    #[test]
    fn nesting_uses_brackets_in_stripe_order() {
        let line_items = Node::List(vec![
            Node::map([
                ("price", Node::from("price_123")),
                ("quantity", 2u32.into()),
            ]),
            Node::map([
                ("price", Node::from("price_456")),
                ("quantity", 1u32.into()),
            ]),
        ]);
        let f = Form::new()
            .with("line_items", line_items)
            .and_then(|f| {
                f.with(
                    "after_completion",
                    Node::map([
                        ("type", Node::from("redirect")),
                        (
                            "redirect",
                            Node::map([("url", "https://shop.example/ok?a=1&b=2")]),
                        ),
                    ]),
                )
            })
            .and_then(|f| {
                f.with(
                    "restrictions",
                    Node::map([("completed_sessions", Node::map([("limit", 5u32)]))]),
                )
            })
            .and_then(|f| f.with("metadata", Node::map([("order", "42")])))
            .unwrap();
        let want: Vec<(String, String)> = [
            ("line_items[0][price]", "price_123"),
            ("line_items[0][quantity]", "2"),
            ("line_items[1][price]", "price_456"),
            ("line_items[1][quantity]", "1"),
            ("after_completion[type]", "redirect"),
            (
                "after_completion[redirect][url]",
                "https://shop.example/ok?a=1&b=2",
            ),
            ("restrictions[completed_sessions][limit]", "5"),
            ("metadata[order]", "42"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(f.pairs(), want.as_slice());
        assert_eq!(decoded(&f), want, "what Stripe decodes is what we meant");
    }

    #[test]
    fn brackets_and_reserved_characters_are_percent_encoded() {
        let f = Form::new()
            .with("metadata", Node::map([("note", "a&b=c d+é%")]))
            .unwrap();
        assert_eq!(f.encode(), "metadata%5Bnote%5D=a%26b%3Dc+d%2B%C3%A9%25");
    }

    #[test]
    fn repeated_values_use_empty_brackets() {
        let f = Form::new()
            .with(
                "expand",
                Node::Repeated(vec!["data.default_price".into(), "x".into()]),
            )
            .unwrap();
        assert_eq!(
            f.pairs(),
            [
                ("expand[]".to_string(), "data.default_price".to_string()),
                ("expand[]".to_string(), "x".to_string())
            ]
        );
        assert_eq!(f.encode(), "expand%5B%5D=data.default_price&expand%5B%5D=x");
    }

    #[test]
    fn empty_structures_add_nothing() {
        let f = Form::new()
            .with("metadata", Node::Map(vec![]))
            .and_then(|f| f.with("line_items", Node::List(vec![])))
            .and_then(|f| f.with("expand", Node::Repeated(vec![])))
            .unwrap();
        assert!(f.is_empty());
        assert_eq!(f.encode(), "");
    }

    #[test]
    fn names_that_would_change_the_structure_are_refused() {
        for bad in ["a[b]", "x]", "[", ""] {
            let e = Form::new()
                .with("metadata", Node::map([(bad, "v")]))
                .unwrap_err();
            assert_eq!(e.0, bad);
            assert!(Form::new().with(bad, "v").is_err(), "{bad}");
        }
        assert!(BadKey("a[b]".into()).to_string().contains("a[b]"));
    }

    #[test]
    fn unicode_keys_and_values_round_trip() {
        let f = Form::new()
            .with("metadata", Node::map([("طلب", "٤٢ ريال")]))
            .unwrap();
        assert_eq!(
            decoded(&f),
            [("metadata[طلب]".to_string(), "٤٢ ريال".to_string())]
        );
    }

    #[test]
    fn integers_of_every_width_are_plain_decimal() {
        let f = Form::new()
            .with("a", -5i64)
            .and_then(|f| f.with("b", 7usize))
            .and_then(|f| f.with("c", u32::MAX))
            .unwrap();
        assert_eq!(f.encode(), "a=-5&b=7&c=4294967295");
    }
}
