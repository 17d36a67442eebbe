//! What each Bedrock model family accepts, so an unsupported feature gets a clear 400 from the
//! gateway instead of a Bedrock error relayed raw.
//!
//! Source: AWS's "Converse API supported models and features" table (see the protocol notes);
//! families not listed are treated as capable and left to Bedrock.

use crate::route::base_model_id;

/// Features a model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// System prompts (otherwise they are folded into the first user turn).
    pub system: bool,
    /// Tool definitions and tool blocks in the history.
    pub tools: bool,
    /// `toolChoice` `any`/`tool` (forcing a tool).
    pub tool_choice: bool,
    /// Image input.
    pub vision: bool,
    /// Document input.
    pub documents: bool,
    /// `toolResult.status` in Converse (Amazon Nova and Claude only).
    pub tool_result_status: bool,
}

const ALL: Capabilities = Capabilities {
    system: true,
    tools: true,
    tool_choice: true,
    vision: true,
    documents: true,
    tool_result_status: false,
};

const TEXT_CHAT: Capabilities = Capabilities {
    system: true,
    tools: true,
    tool_choice: false,
    vision: false,
    documents: true,
    tool_result_status: false,
};

/// Capabilities of a Bedrock model id (geo prefixes and ARNs allowed).
pub fn for_model(model: &str) -> Capabilities {
    let id = base_model_id(model);
    let has = |p: &str| id.starts_with(p);
    let mut caps = family(id, &has);
    // Converse's `toolResult.status` is only for Nova and Claude 3 and later.
    caps.tool_result_status = (has("anthropic.claude-")
        && !has("anthropic.claude-v2")
        && !has("anthropic.claude-instant"))
        || has("amazon.nova");
    caps
}

fn family(id: &str, has: &dyn Fn(&str) -> bool) -> Capabilities {
    if has("anthropic.") {
        if has("anthropic.claude-v2") || has("anthropic.claude-instant") {
            return Capabilities {
                tools: false,
                tool_choice: false,
                vision: false,
                documents: false,
                ..ALL
            };
        }
        if has("anthropic.claude-3-5-haiku") {
            return Capabilities {
                vision: false,
                ..ALL
            };
        }
        return ALL;
    }
    if has("amazon.titan-") {
        return Capabilities {
            system: false,
            tools: false,
            tool_choice: false,
            vision: false,
            documents: false,
            tool_result_status: false,
        };
    }
    if has("amazon.nova-micro") {
        return Capabilities {
            vision: false,
            documents: false,
            ..ALL
        };
    }
    if has("amazon.nova") {
        return ALL;
    }
    if has("meta.") {
        let vision = has("meta.llama3-2-11b") || has("meta.llama3-2-90b") || has("meta.llama4");
        let small = has("meta.llama3-2-1b")
            || has("meta.llama3-2-3b")
            || has("meta.llama3-8b")
            || has("meta.llama3-70b")
            || has("meta.llama2");
        return Capabilities {
            tools: !small,
            vision,
            documents: !small,
            ..TEXT_CHAT
        };
    }
    if has("mistral.") {
        if has("mistral.mistral-large") || has("mistral.pixtral") {
            return Capabilities {
                vision: has("mistral.pixtral"),
                ..ALL
            };
        }
        // Mistral 7B / Mixtral instruct models take neither system prompts nor tools.
        return Capabilities {
            system: false,
            tools: false,
            tool_choice: false,
            vision: false,
            documents: true,
            tool_result_status: false,
        };
    }
    if has("deepseek.r1") {
        return Capabilities {
            tools: false,
            ..TEXT_CHAT
        };
    }
    if has("cohere.") || has("ai21.") || has("deepseek.") || has("writer.") || has("openai.") {
        return TEXT_CHAT;
    }
    if has("qwen.") {
        return Capabilities {
            vision: id.contains("-vl"),
            ..TEXT_CHAT
        };
    }
    ALL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert!(for_model("us.anthropic.claude-sonnet-4-20250514-v1:0").vision);
        assert!(!for_model("anthropic.claude-3-5-haiku-20241022-v1:0").vision);
        assert!(!for_model("amazon.titan-text-express-v1").system);
        assert!(!for_model("amazon.nova-micro-v1:0").vision);
        assert!(for_model("eu.amazon.nova-pro-v1:0").vision);
        assert!(for_model("us.meta.llama3-2-90b-instruct-v1:0").vision);
        assert!(!for_model("meta.llama3-1-70b-instruct-v1:0").vision);
        assert!(!for_model("meta.llama3-2-3b-instruct-v1:0").tools);
        assert!(!for_model("mistral.mixtral-8x7b-instruct-v0:1").system);
        assert!(for_model("mistral.mistral-large-2407-v1:0").tool_choice);
        assert!(!for_model("cohere.command-r-plus-v1:0").tool_choice);
        assert!(for_model("us.amazon.nova-pro-v1:0").tool_result_status);
        assert!(for_model("anthropic.claude-3-haiku-20240307-v1:0").tool_result_status);
        assert!(!for_model("us.meta.llama3-3-70b-instruct-v1:0").tool_result_status);
        assert!(!for_model("mistral.mistral-large-2407-v1:0").tool_result_status);
        assert!(!for_model("us.deepseek.r1-v1:0").tools);
        assert_eq!(for_model("newvendor.model-v1:0"), ALL);
    }
}
