//! A chat's conversation kept inside the model's context: the oldest whole
//! turns give way, the system message never does.

use crate::tokenizer::Message;
use anyhow::{bail, Result};

/// The prompt ids of `messages` (ending with the user's new message), from
/// `encode`, leaving `reserve` positions of a context of `n_ctx` for the
/// reply: while they do not fit, the oldest turn (a user message and the
/// replies up to the next one) is removed from `messages`. Returns the ids
/// and how many turns were dropped; an error when even the system message
/// and the new message alone do not fit (`messages` is then unchanged).
pub fn fit_conversation(
    messages: &mut Vec<Message>,
    n_ctx: usize,
    reserve: usize,
    mut encode: impl FnMut(&[Message]) -> Result<Vec<u32>>,
) -> Result<(Vec<u32>, usize)> {
    let limit = n_ctx.saturating_sub(reserve);
    let first = usize::from(messages.first().is_some_and(|m| m.role == "system"));
    let mut start = first;
    let mut dropped = 0;
    loop {
        let kept: Vec<Message> = messages[..first].iter().chain(&messages[start..]).cloned().collect();
        let ids = encode(&kept)?;
        if ids.len() <= limit {
            messages.drain(first..start);
            return Ok((ids, dropped));
        }
        // The next turn starts at the next user message after this one's.
        match (start + 1..messages.len()).find(|&i| messages[i].role == "user") {
            Some(next) => {
                start = next;
                dropped += 1;
            }
            None => bail!(
                "this message{} takes {} tokens, and the model's context is {n_ctx} with {reserve} kept for the \
                 reply: say less{}",
                if first == 1 { " with the system message" } else { "" },
                ids.len(),
                if first == 1 { ", or use a shorter --system" } else { "" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One id per byte of every message, and two per message around it.
    fn encode(messages: &[Message]) -> Result<Vec<u32>> {
        Ok(messages.iter().flat_map(|m| vec![0; m.content.len() + 2]).collect())
    }

    fn conversation(system: bool) -> Vec<Message> {
        let mut m = Vec::new();
        if system {
            m.push(Message::new("system", "sys"));
        }
        for (role, content) in [
            ("user", "aaaa"),
            ("assistant", "bb"),
            ("user", "c"),
            ("assistant", "d"),
            ("user", "eeeee"),
        ] {
            m.push(Message::new(role, content));
        }
        m
    }

    #[test]
    fn the_oldest_turns_go_first_and_the_system_message_stays() {
        let full = encode(&conversation(true)).unwrap().len(); // 5 + 6 + 4 + 3 + 3 + 7 = 28
        let mut m = conversation(true);
        let (ids, dropped) = fit_conversation(&mut m, full + 4, 4, encode).unwrap();
        assert_eq!((ids.len(), dropped, m.len()), (full, 0, 6));
        // One position short: the first turn (user + assistant) goes.
        let (ids, dropped) = fit_conversation(&mut m, full + 3, 4, encode).unwrap();
        assert_eq!((ids.len(), dropped), (full - 10, 1));
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(m[1].content, "c");
        // Only the system message and the last message fit.
        let (ids, dropped) = fit_conversation(&mut m, 12 + 4, 4, encode).unwrap();
        assert_eq!((ids.len(), dropped, m.len()), (12, 1, 2));
        // Not even those: an error, the conversation unchanged.
        let e = fit_conversation(&mut m, 11 + 4, 4, encode).unwrap_err().to_string();
        assert!(
            e.contains("with the system message takes 12 tokens") && e.contains("--system"),
            "{e}"
        );
        assert_eq!(m.len(), 2);
        // Without a system message the first message may go too.
        let mut m = conversation(false);
        let (_, dropped) = fit_conversation(&mut m, 7, 0, encode).unwrap();
        assert_eq!((dropped, m.len()), (2, 1));
        let e = fit_conversation(&mut m, 1, usize::MAX, encode).unwrap_err().to_string();
        assert!(e.contains("takes 7 tokens") && !e.contains("system"), "{e}");
    }
}
