//! Helpers compiled into the binary.
//!
//! - `echo`: returns its input as the result and streams the text of its messages as chunks.
//!   Input `{"messages":[{"role":"user","content":"…"}]}`; optional `chunks` (1..=1000,
//!   default 3) sets how many chunks, `delay_ms` waits before each chunk so a test can hold a
//!   job running. The delays of one request add up to at most 60 s ([`MAX_TOTAL_DELAY_MS`]).
//!   Echo is a development and test helper: it is only available when `A2A_BUILTIN_ECHO`
//!   allows it (by default in development, not in production).
//! - `fail`: fails with `message` (default "failed on purpose") after optional `delay_ms`
//!   (at most 60 s).
//!
//! Inputs beyond these bounds are refused when the request is made ([`Executor::check_input`]),
//! so a caller gets `invalid_params` instead of a request that runs for days.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{ExecContext, ExecError, Executor, ExecutorEnv, OutputSink};

pub const NAMES: &[&str] = &["echo", "fail"];

/// Most chunks one `echo` request may ask for.
pub const MAX_CHUNKS: u64 = 1000;
/// Most time the delays of one `echo` or `fail` request may add up to.
pub const MAX_TOTAL_DELAY_MS: u64 = 60_000;

/// Why the builtin `name` cannot be used with this configuration, if it cannot.
pub fn unavailable(name: &str, env: &ExecutorEnv) -> Option<String> {
    (name == "echo" && !env.builtin_echo).then(|| {
        "the builtin echo is a development helper and is off here; set A2A_BUILTIN_ECHO=on \
         to offer it (by default it is on in development and off in production)"
            .to_string()
    })
}

pub fn build(name: &str, env: &ExecutorEnv) -> Result<Arc<dyn Executor>, String> {
    if let Some(reason) = unavailable(name, env) {
        return Err(reason);
    }
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

/// An optional whole-number field of the input within `range`, or a message naming the bound.
fn bounded(
    input: &Value,
    field: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "`{field}` is {v}; it must be a whole number from {} to {}",
                range.start(),
                range.end()
            )),
        },
    }
}

fn delay_of(input: &Value) -> Result<u64, String> {
    bounded(input, "delay_ms", 0, 0..=MAX_TOTAL_DELAY_MS)
}

/// The `(chunks, delay_ms)` an `echo` input asks for, within the bounds.
fn echo_shape(input: &Value) -> Result<(u64, u64), String> {
    let chunks = bounded(input, "chunks", 3, 1..=MAX_CHUNKS)?;
    let delay = delay_of(input)?;
    if chunks.saturating_mul(delay) > MAX_TOTAL_DELAY_MS {
        return Err(format!(
            "`chunks` × `delay_ms` = {chunks} × {delay} ms is more than the {MAX_TOTAL_DELAY_MS} ms \
             of delays one echo request may hold; lower `delay_ms` or `chunks`"
        ));
    }
    Ok((chunks, delay))
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
        // Also checked at admission; a request recovered from an older store is held to the
        // same bounds here.
        let (n, delay) = echo_shape(&input).map_err(ExecError::Failed)?;
        for piece in split_even(&echo_text(&input), n as usize) {
            pause(&ctx, delay).await?;
            if !out.chunk(Value::String(piece)).await {
                return Err(ExecError::Canceled);
            }
        }
        Ok(input)
    }

    fn check_input(&self, input: &Value) -> Result<(), String> {
        echo_shape(input).map(|_| ())
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
        pause(&ctx, delay_of(&input).map_err(ExecError::Failed)?).await?;
        let msg = input
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("failed on purpose");
        Err(ExecError::Failed(msg.to_string()))
    }

    fn check_input(&self, input: &Value) -> Result<(), String> {
        delay_of(input).map(|_| ())
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
    fn echo_bounds_are_checked() {
        let shape = |v: Value| echo_shape(&v);
        assert_eq!(shape(serde_json::json!({})), Ok((3, 0)));
        assert_eq!(
            shape(serde_json::json!({"chunks": 600, "delay_ms": 100})),
            Ok((600, 100))
        );
        let e = shape(serde_json::json!({"delay_ms": 600_000})).unwrap_err();
        assert!(e.contains("delay_ms") && e.contains("60000"), "{e}");
        let e = shape(serde_json::json!({"chunks": 1000, "delay_ms": 100})).unwrap_err();
        assert!(e.contains("1000 × 100"), "{e}");
        assert!(shape(serde_json::json!({"chunks": 0})).is_err());
        assert!(shape(serde_json::json!({"chunks": "many"})).is_err());
    }

    #[test]
    fn echo_text_joins_contents() {
        let v = serde_json::json!({"messages":[{"role":"user","content":"hi"},{"role":"user","content":"there"}]});
        assert_eq!(echo_text(&v), "hi\nthere");
    }
}
