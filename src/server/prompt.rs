//! The token ids a request asks to continue: each `prompt` of a completion,
//! or a chat's `messages` through the model's chat template; each checked
//! against the context.

use super::api::{ApiError, Body, ChatMessage, Content};
use super::Model;
use crate::model::{encode_chat, encode_prompt};
use crate::tokenizer::Message;
use axum::http::StatusCode;

/// The prompts of a completion request, one per `prompt` string.
pub fn completion(model: &Model, body: &Body) -> Result<Vec<Vec<u32>>, ApiError> {
    let Some(prompt) = &body.prompt else {
        return Err(ApiError::invalid(
            "prompt",
            "prompt is required: a string or a list of strings".into(),
        ));
    };
    let texts = prompt.to_vec();
    if texts.is_empty() {
        return Err(ApiError::invalid(
            "prompt",
            "prompt is an empty list: give at least one string".into(),
        ));
    }
    texts
        .iter()
        .map(|text| {
            let ids =
                encode_prompt(&model.tokenizer, text).map_err(|e| ApiError::invalid("prompt", format!("{e:#}")))?;
            fits(model, ids, "prompt")
        })
        .collect()
}

/// The prompt of a chat request: its messages rendered with the chat
/// template, the assistant's turn begun.
pub fn chat(model: &Model, body: &Body) -> Result<Vec<Vec<u32>>, ApiError> {
    let template = model.template.as_ref().map_err(|why| {
        ApiError::invalid(
            "messages",
            format!("{why}: this model cannot chat here; use /v1/completions"),
        )
    })?;
    let messages = match &body.messages {
        Some(m) if !m.is_empty() => m.iter().map(message).collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(ApiError::invalid(
                "messages",
                "messages is required: a non-empty list".into(),
            ))
        }
    };
    let text = model
        .chat
        .render(template, &messages, true)
        .map_err(|e| ApiError::invalid("messages", format!("the chat template refused the messages: {e:#}")))?;
    let ids = encode_chat(&model.tokenizer, &text).map_err(|e| ApiError::invalid("messages", format!("{e:#}")))?;
    Ok(vec![fits(model, ids, "messages")?])
}

fn message(m: &ChatMessage) -> Result<Message, ApiError> {
    let content = match &m.content {
        None => String::new(),
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for p in parts {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            "messages",
                            format!("a content part of type {kind:?}: only {{\"type\": \"text\", \"text\": …}} parts are supported"),
                        ))
                    }
                }
            }
            text
        }
    };
    Ok(Message::new(&m.role, &content))
}

/// `ids`, if they leave room in the context for at least one new token.
fn fits(model: &Model, ids: Vec<u32>, param: &str) -> Result<Vec<u32>, ApiError> {
    if ids.len() >= model.ctx {
        let message = format!(
            "this model's context is {} tokens, but the {param} has {} tokens: shorten it to at most {} to leave room for an answer",
            model.ctx,
            ids.len(),
            model.ctx - 1
        );
        return Err(ApiError {
            param: Some(param.to_string()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("context_length_exceeded"),
                message,
            )
        });
    }
    Ok(ids)
}
