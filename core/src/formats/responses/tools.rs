//! Responses tool declarations and `tool_choice`, in the shapes the IR and Bedrock take.
//!
//! * `function` tools are flat (`name`, `parameters` at the top level).
//! * `custom` (free-form) tools become a function taking one string, `input` (the grammar, if
//!   any, goes into the description); their calls go back as `custom_tool_call` with that string.
//! * Functions inside a `namespace` become `<namespace>__<name>`; their calls go back as
//!   `function_call` with `namespace` and `name`.
//! * Names Bedrock and OpenAI would refuse (outside `[A-Za-z0-9_-]{1,64}`) are made acceptable
//!   the same way, and their calls go back under the client's name.
//! * Built-in tools (`web_search`, `file_search`, `tool_search`, `code_interpreter`, `mcp`,
//!   `computer…`, `image_generation`, `local_shell`, `shell`, `apply_patch`, …) need OpenAI's
//!   servers: the declaration is dropped (noted in the debug log), never refused, so a client
//!   that always declares them (Codex) still works. Unknown tool types are dropped the same way.

use crate::error::GatewayError;
use crate::ir::{Tool, ToolAlias, ToolChoice};
use crate::json::{as_object, get, opt_array, opt_bool, opt_object, opt_str, req_str, type_name};
use crate::json::{Lazy, Object};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The longest tool name Bedrock and OpenAI accept.
pub const MAX_NAME: usize = 64;

/// The input schema of a `custom` tool: one string.
pub fn custom_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The raw input of the tool."}},
        "required": ["input"],
    })
}

/// The function name the upstream sees for a tool `name` in `namespace` (if any): valid
/// characters only, at most 64 of them (a long name keeps its start and gets a short hash of
/// the whole, so it stays unique and the same every turn).
pub fn flat_name(namespace: Option<&str>, name: &str) -> String {
    let full = match namespace {
        Some(ns) => format!("{ns}__{name}"),
        None => name.to_string(),
    };
    let mut flat: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if flat.len() > MAX_NAME || flat != full {
        let digest = Sha256::digest(full.as_bytes());
        let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        flat.truncate(MAX_NAME - hash.len() - 1);
        flat.push('_');
        flat.push_str(&hash);
    }
    if flat.is_empty() {
        flat.push('_');
    }
    flat
}

/// Tool declarations decoded: the IR tools, how calls of renamed ones go back, and what was
/// dropped.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The tools the upstream gets.
    pub tools: Vec<Tool>,
    /// Calls of these go back under another name or shape.
    pub aliases: Vec<ToolAlias>,
    /// Dropped declarations (for the debug log).
    pub notes: Vec<String>,
}

impl Decoded {
    /// Decodes one list of declarations (`tools`, or an `additional_tools` item's `tools`);
    /// `path` names the list in errors.
    pub fn add_list(&mut self, items: &[Value], path: &str) -> Result<(), GatewayError> {
        for (i, item) in items.iter().enumerate() {
            let tpath = Lazy(|| format!("{path}[{i}]"));
            let t = as_object(item, &tpath)?;
            let kind = opt_str(t, "type", &Lazy(|| format!("{tpath}.type")))?.unwrap_or("function");
            match kind {
                "function" | "custom" => self.add_tool(t, kind, None, &tpath)?,
                "namespace" => {
                    let ns = req_str(t, "name", &Lazy(|| format!("{tpath}.name")))?;
                    let inner_path = Lazy(|| format!("{tpath}.tools"));
                    for (j, inner) in opt_array(t, "tools", &inner_path)?
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .enumerate()
                    {
                        let ipath = Lazy(|| format!("{tpath}.tools[{j}]"));
                        let it = as_object(inner, &ipath)?;
                        let ikind = opt_str(it, "type", &Lazy(|| format!("{ipath}.type")))?
                            .unwrap_or("function");
                        match ikind {
                            "function" | "custom" => self.add_tool(it, ikind, Some(ns), &ipath)?,
                            other => self
                                .notes
                                .push(format!("dropped tool {ipath} of type {other}")),
                        }
                    }
                }
                other => self
                    .notes
                    .push(format!("dropped tool {tpath} of type {other}")),
            }
        }
        Ok(())
    }

    fn add_tool(
        &mut self,
        t: &Object,
        kind: &str,
        namespace: Option<&str>,
        path: &dyn std::fmt::Display,
    ) -> Result<(), GatewayError> {
        let name = req_str(t, "name", &Lazy(|| format!("{path}.name")))?;
        let mut description =
            opt_str(t, "description", &Lazy(|| format!("{path}.description")))?.map(str::to_string);
        let custom = kind == "custom";
        let parameters = if custom {
            if let Some(grammar) = grammar_note(t, path)? {
                let d = description.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push_str("\n\n");
                }
                d.push_str(&grammar);
            }
            custom_schema()
        } else {
            match get(t, "parameters") {
                None => json!({"type": "object", "properties": {}}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(v) => {
                    return Err(GatewayError::invalid(
                        format!("{path}.parameters"),
                        format!(
                            "Invalid type for `{path}.parameters`: expected an object, got {}.",
                            type_name(v)
                        ),
                    ))
                }
            }
        };
        let flat = flat_name(namespace, name);
        if custom || flat != name {
            self.aliases.push(ToolAlias {
                flat: flat.clone(),
                namespace: namespace.map(str::to_string),
                name: name.to_string(),
                custom,
            });
        }
        self.tools.push(Tool {
            name: flat,
            description,
            parameters,
            strict: if custom {
                None
            } else {
                opt_bool(t, "strict", &Lazy(|| format!("{path}.strict")))?
            },
            builtin: None,
        });
        Ok(())
    }
}

/// A `custom` tool's grammar as an instruction for the model (the upstream cannot enforce it).
fn grammar_note(t: &Object, path: &dyn std::fmt::Display) -> Result<Option<String>, GatewayError> {
    let Some(format) = opt_object(t, "format", &Lazy(|| format!("{path}.format")))? else {
        return Ok(None);
    };
    if opt_str(format, "type", &Lazy(|| format!("{path}.format.type")))? != Some("grammar") {
        return Ok(None);
    }
    let syntax =
        opt_str(format, "syntax", &Lazy(|| format!("{path}.format.syntax")))?.unwrap_or("lark");
    let definition = opt_str(
        format,
        "definition",
        &Lazy(|| format!("{path}.format.definition")),
    )?
    .unwrap_or_default();
    Ok(Some(format!(
        "The `input` string must follow this {syntax} grammar:\n{definition}"
    )))
}

/// How calls of the tool the upstream knows as `flat` go back to the client.
pub fn alias<'a>(aliases: &'a [ToolAlias], flat: &str) -> Option<&'a ToolAlias> {
    aliases.iter().find(|a| a.flat == flat)
}

/// The upstream's name for a tool the client names `name` (in `namespace`, if any), e.g. in a
/// `function_call` item of the history or in `tool_choice`.
pub fn upstream_name(aliases: &[ToolAlias], namespace: Option<&str>, name: &str) -> String {
    aliases
        .iter()
        .find(|a| a.name == name && a.namespace.as_deref() == namespace)
        .map_or_else(|| flat_name(namespace, name), |a| a.flat.clone())
}

/// Decodes `tool_choice`. A forced built-in tool cannot be honoured (its declaration was
/// dropped): 400, unless the body is relayed to OpenAI as sent.
pub fn decode_tool_choice(
    obj: &Object,
    aliases: &[ToolAlias],
    relayed: bool,
) -> Result<Option<ToolChoice>, GatewayError> {
    let Some(raw) = get(obj, "tool_choice") else {
        return Ok(None);
    };
    match raw {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            other => Err(GatewayError::invalid(
                "tool_choice",
                format!("Invalid `tool_choice` `{other}`; expected auto, none, required or an object naming a tool."),
            )),
        },
        Value::Object(o) => match req_str(o, "type", "tool_choice.type")? {
            "function" | "custom" => {
                let name = req_str(o, "name", "tool_choice.name")?;
                Ok(Some(ToolChoice::Function(upstream_name(
                    aliases, None, name,
                ))))
            }
            "allowed_tools" => match opt_str(o, "mode", "tool_choice.mode")? {
                Some("required") => Ok(Some(ToolChoice::Required)),
                _ => Ok(Some(ToolChoice::Auto)),
            },
            _ if relayed => Ok(None),
            other => Err(GatewayError::invalid(
                "tool_choice.type",
                format!("The built-in tool `{other}` cannot be forced through this gateway: built-in tools run only on OpenAI's servers. Use `auto`, `required` or a function or custom tool."),
            )),
        },
        v => Err(GatewayError::invalid(
            "tool_choice",
            format!(
                "Invalid type for `tool_choice`: expected a string or an object, got {}.",
                type_name(v)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(tools: Value) -> Decoded {
        let mut d = Decoded::default();
        d.add_list(tools.as_array().unwrap(), "tools").unwrap();
        d
    }

    #[test]
    fn codex_tool_types() {
        let d = decode(json!([
            {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}, "strict": false},
            {"type": "custom", "name": "apply_patch", "description": "Patch files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"}},
            {"type": "namespace", "name": "multi_agent_v1", "description": "Agents.", "tools": [
                {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}},
                {"type": "web_search"},
            ]},
            {"type": "web_search", "external_web_access": false},
            {"type": "tool_search", "execution": "client"},
            {"type": "some_future_type"},
        ]));
        let names: Vec<&str> = d.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["exec_command", "apply_patch", "multi_agent_v1__spawn_agent"]
        );
        assert_eq!(d.tools[1].parameters, custom_schema());
        let desc = d.tools[1].description.as_deref().unwrap();
        assert!(desc.starts_with("Patch files.\n\n") && desc.ends_with("start: patch"));
        assert_eq!(d.tools[0].strict, Some(false));
        assert_eq!(d.aliases.len(), 2);
        assert!(d.aliases[0].custom && d.aliases[0].namespace.is_none());
        assert_eq!(d.aliases[1].namespace.as_deref(), Some("multi_agent_v1"));
        assert_eq!(d.notes.len(), 4, "{:?}", d.notes);
        assert!(d.notes[0].contains("tools[2].tools[1]"));
    }

    #[test]
    fn flat_names_fit_the_upstream_rules() {
        assert_eq!(flat_name(Some("ns"), "f"), "ns__f");
        assert_eq!(flat_name(None, "ok_name-1"), "ok_name-1");
        let dotted = flat_name(None, "mcp.server.tool");
        assert!(dotted.starts_with("mcp_server_tool_") && dotted.len() == 24);
        let long = flat_name(Some(&"n".repeat(40)), &"f".repeat(40));
        assert_eq!(long.len(), MAX_NAME);
        assert_eq!(long, flat_name(Some(&"n".repeat(40)), &"f".repeat(40)));
        assert_ne!(long, flat_name(Some(&"n".repeat(40)), &"g".repeat(40)));
        assert!(long
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        // Names the client uses in history map to the same flat name.
        let d = decode(json!([{"type": "function", "name": "mcp.server.tool"}]));
        assert_eq!(
            upstream_name(&d.aliases, None, "mcp.server.tool"),
            d.tools[0].name
        );
        assert_eq!(
            alias(&d.aliases, &d.tools[0].name).unwrap().name,
            "mcp.server.tool"
        );
    }

    #[test]
    fn tool_choices() {
        let obj = |v: Value| json!({ "tool_choice": v }).as_object().unwrap().clone();
        let aliases = decode(json!([{"type": "custom", "name": "apply_patch"}])).aliases;
        for (v, want) in [
            (json!("auto"), Some(ToolChoice::Auto)),
            (json!("required"), Some(ToolChoice::Required)),
            (json!("none"), Some(ToolChoice::None)),
            (
                json!({"type": "custom", "name": "apply_patch"}),
                Some(ToolChoice::Function("apply_patch".into())),
            ),
            (
                json!({"type": "function", "name": "f"}),
                Some(ToolChoice::Function("f".into())),
            ),
            (
                json!({"type": "allowed_tools", "mode": "required", "tools": []}),
                Some(ToolChoice::Required),
            ),
        ] {
            assert_eq!(decode_tool_choice(&obj(v), &aliases, false).unwrap(), want);
        }
        let e =
            decode_tool_choice(&obj(json!({"type": "web_search"})), &aliases, false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice.type"));
        assert!(e.message.contains("web_search"));
        assert_eq!(
            decode_tool_choice(&obj(json!({"type": "web_search"})), &aliases, true).unwrap(),
            None
        );
        assert!(decode_tool_choice(&obj(json!("sometimes")), &aliases, false).is_err());
    }
}
