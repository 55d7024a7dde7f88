//! Rendering a message for one recipient.
//!
//! `message` and `subject` are templates (MiniJinja, Jinja2's syntax), or the
//! body comes from a named file in `ingest.template_dir` (`template`). Variables:
//! every extra field of the message, plus `recipient` (the recipient as given)
//! and `name` / `address` for the recipient's display name and address. A
//! template that does not parse or refers to something undefined is an error
//! for that recipient, never for the node.

use std::path::PathBuf;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::message::Recipient;
use crate::provider::Rendered;

/// Renders messages; cheap to share.
#[derive(Debug, Default, Clone)]
pub struct Templates {
    dir: Option<PathBuf>,
}

/// Why a message could not be rendered for a recipient.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template error in {part}: {detail}")]
pub struct TemplateError {
    /// `message`, `subject` or the named template.
    pub part: String,
    /// What the engine said.
    pub detail: String,
}

impl Templates {
    /// Templates named in messages are read from `dir`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Templates { dir }
    }

    /// Renders `message`'s subject and body for `recipient`.
    pub fn render(
        &self,
        message: &str,
        subject: Option<&str>,
        template: Option<&str>,
        vars: &Map<String, Value>,
        recipient: &Recipient,
    ) -> Result<Rendered, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut context = vars.clone();
        context.insert("recipient".into(), recipient.to_value());
        context.insert(
            "name".into(),
            recipient.name.clone().map(Value::String).unwrap_or(Value::Null),
        );
        context.insert(
            "address".into(),
            recipient
                .address()
                .map(|a| Value::String(a.into()))
                .unwrap_or(Value::Null),
        );
        let context = Value::Object(context);
        let render = |part: &str, source: &str| {
            env.render_str(source, &context).map_err(|e| TemplateError {
                part: part.to_string(),
                detail: describe(&e),
            })
        };
        let subject = subject.map(|s| render("subject", s)).transpose()?;
        let (text, html) = match template {
            None => (render("message", message)?, None),
            Some(name) => {
                let source = self.read(name)?;
                // Named so that an `.html` template escapes what it interpolates.
                let body = env
                    .template_from_named_str(name, &source)
                    .and_then(|t| t.render(&context))
                    .map_err(|e| TemplateError {
                        part: name.to_string(),
                        detail: describe(&e),
                    })?;
                let text = if message.trim().is_empty() {
                    strip_tags(&body)
                } else {
                    render("message", message)?
                };
                if name.ends_with(".html") || name.ends_with(".htm") {
                    (text, Some(body))
                } else {
                    (body, None)
                }
            }
        };
        Ok(Rendered { subject, text, html })
    }

    fn read(&self, name: &str) -> Result<String, TemplateError> {
        let missing = |detail: String| TemplateError {
            part: name.to_string(),
            detail,
        };
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| missing("no template directory is configured (ingest.template_dir)".into()))?;
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| missing(format!("cannot read {}: {e}", dir.join(name).display())))
    }
}

/// The engine's message with its line, when it has one.
fn describe(error: &minijinja::Error) -> String {
    let mut detail = error.kind().to_string();
    if let Some(d) = error.detail() {
        detail = format!("{detail}: {d}");
    }
    if let Some(line) = error.line() {
        detail = format!("{detail} (line {line})");
    }
    detail
}

/// A plain-text fallback for an HTML body: tags dropped, whitespace kept.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn renders_per_recipient() {
        let t = Templates::default();
        let ada = Recipient {
            name: Some("Ada".into()),
            ..Recipient::at("ada@example.com")
        };
        let r = t
            .render(
                "Hi {{ name }}, order {{ order }}",
                Some("To {{ address }}"),
                None,
                &vars(json!({"order": 7})),
                &ada,
            )
            .unwrap();
        assert_eq!(r.text, "Hi Ada, order 7");
        assert_eq!(r.subject.as_deref(), Some("To ada@example.com"));
    }

    #[test]
    fn undefined_and_broken_templates_are_errors_naming_the_part() {
        let t = Templates::default();
        let r = Recipient::at("a@b");
        let e = t.render("Hi {{ nobody }}", None, None, &Map::new(), &r).unwrap_err();
        assert_eq!(e.part, "message");
        let e = t.render("ok", Some("{% if %}"), None, &Map::new(), &r).unwrap_err();
        assert_eq!(e.part, "subject");
        let e = t.render("", None, Some("welcome.html"), &Map::new(), &r).unwrap_err();
        assert!(e.detail.contains("template_dir"), "{e}");
    }

    #[test]
    fn named_html_templates_come_with_a_text_part() {
        let dir = std::env::temp_dir().join(format!("courier-tpl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("welcome.html"), "<p>Welcome, <b>{{ name }}</b></p>").unwrap();
        let t = Templates::new(Some(dir.clone()));
        let r = Recipient {
            name: Some("Ada <3".into()),
            ..Recipient::at("a@b")
        };
        let out = t.render("", None, Some("welcome.html"), &Map::new(), &r).unwrap();
        assert_eq!(out.html.as_deref(), Some("<p>Welcome, <b>Ada &lt;3</b></p>"));
        assert_eq!(out.text, "Welcome, Ada &lt;3");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
