//! A small element tree for the XML that Pacemaker's tools print.
//!
//! `crm_mon --output-as=xml` and `cibadmin --query` answer with documents of a
//! few kilobytes, so reading them whole into a tree and then walking it is
//! simpler to get right than a streaming state machine. The builder uses an
//! explicit stack (no recursion on the input) and refuses documents nested
//! deeper than [`MAX_DEPTH`], so neither parsing nor dropping the tree can
//! exhaust the stack, whatever arrives on a pipe.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// Deepest nesting accepted. `crm_mon` output nests about six levels
/// (`pacemaker-result/resources/clone/group/resource/node`).
pub(crate) const MAX_DEPTH: usize = 64;

/// One element: its name, attributes (unescaped), children and text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The value of attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The children named `name`, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every element named `name` below this one (not this one), in document order.
    pub fn descendants_named<'a>(&'a self, name: &str) -> Vec<&'a Element> {
        let mut found = Vec::new();
        // Depth-first, children in document order: a stack of reversed children.
        let mut todo: Vec<&Element> = self.children.iter().rev().collect();
        while let Some(e) = todo.pop() {
            if e.name == name {
                found.push(e);
            }
            todo.extend(e.children.iter().rev());
        }
        found
    }
}

/// Parses a whole document into its root element.
///
/// Fails, with a message saying where, on malformed or truncated input, on a
/// document with no root or with content after it, and on nesting deeper
/// than [`MAX_DEPTH`].
pub(crate) fn parse(xml: &str) -> Result<Element, String> {
    // No trim_text: since quick-xml 0.38 a reference (`&amp;`) is an event
    // of its own, and trimming each piece of text would eat the spaces
    // around it. An element's text is trimmed as a whole when it closes.
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err("content after the root element".to_string());
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                let e = element(&start)?;
                attach(e, &mut stack, &mut root)?;
            }
            Event::End(_) => {
                // quick-xml has already checked that the names match.
                let mut e = stack
                    .pop()
                    .ok_or_else(|| "end tag without a start tag".to_string())?;
                let trimmed = e.text.trim();
                if trimmed.len() != e.text.len() {
                    e.text = trimmed.to_string();
                }
                attach(e, &mut stack, &mut root)?;
            }
            Event::Text(t) => {
                let text = t.xml10_content().map_err(|e| {
                    format!("malformed text at byte {}: {e}", reader.buffer_position())
                })?;
                push_text(&mut stack, &text)?;
            }
            Event::GeneralRef(r) => {
                let text = reference(&r).map_err(|e| {
                    format!(
                        "malformed reference at byte {}: {e}",
                        reader.buffer_position()
                    )
                })?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(c) => match stack.last_mut() {
                Some(top) => top.text.push_str(&String::from_utf8_lossy(&c)),
                None => return Err("CDATA outside the root element".to_string()),
            },
            Event::Eof => break,
            // The declaration, comments, processing instructions, DOCTYPE.
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("truncated: <{}> is never closed", open.name));
    }
    root.ok_or_else(|| "no XML element".to_string())
}

/// Adds text to the open element; only blanks may stand outside the root.
fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(top) => top.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err("text outside the root element".to_string()),
    }
    Ok(())
}

/// The text a reference in content stands for: a character reference
/// (`&#38;`, `&#x26;`) or one of XML's five predefined entities. Pacemaker
/// declares no other entity, so any other name is an error.
fn reference(r: &BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| e.to_string())?;
    resolve_predefined_entity(&name)
        .map(str::to_string)
        .ok_or_else(|| format!("unknown entity &{name};"))
}

fn element(start: &BytesStart<'_>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|e| format!("malformed attribute in <{name}>: {e}"))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("malformed value of {key} in <{name}>: {e}"))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

fn attach(e: Element, stack: &mut [Element], root: &mut Option<Element>) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(e),
        None if root.is_none() => *root = Some(e),
        None => return Err("more than one root element".to_string()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_unescaped_and_children_kept_in_order() {
        let root = parse(
            r#"<?xml version="1.0"?><a x="&lt;3.15.1"><b n="1"/><c/><b n="2">t&amp;t</b></a>"#,
        )
        .unwrap();
        assert_eq!(root.attr("x"), Some("<3.15.1"));
        let bs: Vec<_> = root
            .children_named("b")
            .filter_map(|b| b.attr("n"))
            .collect();
        assert_eq!(bs, ["1", "2"]);
        assert_eq!(root.children[2].text, "t&t");
    }

    /// quick-xml 0.38 made references events of their own: the spaces
    /// around them and character references survive, and an unknown
    /// entity is an error, not text.
    #[test]
    fn text_keeps_the_spaces_around_references_and_resolves_character_references() {
        let root =
            parse("<a>\n  <e> Failed &amp; stopped &#x41;&#66; &lt;x&gt; </e>\n</a>").unwrap();
        assert_eq!(root.children[0].text, "Failed & stopped AB <x>");
        assert_eq!(root.text, "");
        let err = parse("<a>&nbsp;</a>").unwrap_err();
        assert!(err.contains("unknown entity &nbsp;"), "{err}");
    }

    #[test]
    fn descendants_are_found_in_document_order() {
        let root = parse("<a><n id='1'><n id='2'/></n><x><n id='3'/></x></a>").unwrap();
        let ids: Vec<_> = root
            .descendants_named("n")
            .into_iter()
            .filter_map(|n| n.attr("id"))
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }

    #[test]
    fn truncated_documents_are_refused() {
        for doc in ["<a><b>", "<a><b/", "<a x=\"1", "", "   ", "<a></b>", "</a>"] {
            assert!(parse(doc).is_err(), "{doc:?} was accepted");
        }
    }

    #[test]
    fn two_roots_or_stray_text_are_refused() {
        assert!(parse("<a/><b/>").is_err());
        assert!(parse("<a/>junk").is_err());
        assert!(parse("junk<a/>").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "<a>".repeat(100_000);
        let err = parse(&deep).unwrap_err();
        assert!(err.contains("deeper"), "{err}");
    }
}
