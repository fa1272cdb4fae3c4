//! Helpers compiled into the binary.
//!
//! - `echo`: returns its input as the result and streams the text of its messages as chunks.
//!   Input `{"messages":[{"role":"user","content":"…"}]}`; optional `chunks` (1..=1000,
//!   default 3) sets how many chunks, `delay_ms` (0..=600000) waits before each chunk so a
//!   test can hold a job running.
//! - `fail`: fails with `message` (default "failed on purpose") after optional `delay_ms`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{ExecContext, ExecError, Executor, OutputSink};

pub const NAMES: &[&str] = &["echo", "fail"];

pub fn build(name: &str) -> Result<Arc<dyn Executor>, String> {
    match name {
        "echo" => Ok(Arc::new(Echo)),
        "fail" => Ok(Arc::new(Fail)),
        other => Err(format!(
            "unknown builtin executor {other:?}; available: {}",
            NAMES.join(", ")
        )),
    }
}

/// Waits `ms`, or returns `Canceled` as soon as the request is canceled.
async fn pause(ctx: &ExecContext, ms: u64) -> Result<(), ExecError> {
    if ms == 0 {
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        _ = ctx.cancel.cancelled() => Err(ExecError::Canceled),
    }
}

fn delay_of(input: &Value) -> u64 {
    input
        .get("delay_ms")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(600_000)
}

struct Echo;

/// The text an `echo` streams: the `content` of every message, joined by newlines.
fn echo_text(input: &Value) -> String {
    let Some(messages) = input.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    messages
        .iter()
        .filter_map(|m| match m.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) if !other.is_null() => Some(other.to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits `text` into `n` pieces of nearly equal length on character boundaries.
fn split_even(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.max(1);
    let base = chars.len() / n;
    let extra = chars.len() % n;
    let mut out = Vec::with_capacity(n);
    let mut pos = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        out.push(chars[pos..pos + len].iter().collect());
        pos += len;
    }
    out
}

#[async_trait]
impl Executor for Echo {
    async fn run(
        &self,
        ctx: ExecContext,
        input: Value,
        out: OutputSink,
    ) -> Result<Value, ExecError> {
        let n = input
            .get("chunks")
            .and_then(Value::as_u64)
            .unwrap_or(3)
            .clamp(1, 1000) as usize;
        let delay = delay_of(&input);
        for piece in split_even(&echo_text(&input), n) {
            pause(&ctx, delay).await?;
            if !out.chunk(Value::String(piece)).await {
                return Err(ExecError::Canceled);
            }
        }
        Ok(input)
    }
}

struct Fail;

#[async_trait]
impl Executor for Fail {
    async fn run(
        &self,
        ctx: ExecContext,
        input: Value,
        _out: OutputSink,
    ) -> Result<Value, ExecError> {
        pause(&ctx, delay_of(&input)).await?;
        let msg = input
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("failed on purpose");
        Err(ExecError::Failed(msg.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_even_and_lossless() {
        assert_eq!(split_even("abcdefg", 3), vec!["abc", "de", "fg"]);
        assert_eq!(split_even("ab", 3), vec!["a", "b", ""]);
        assert_eq!(split_even("héllo wörld", 2).concat(), "héllo wörld");
    }

    #[test]
    fn echo_text_joins_contents() {
        let v = serde_json::json!({"messages":[{"role":"user","content":"hi"},{"role":"user","content":"there"}]});
        assert_eq!(echo_text(&v), "hi\nthere");
    }
}
