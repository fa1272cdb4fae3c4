//! JSON-RPC 2.0 framing for A2A: the request envelope, errors in the 1.0 and 0.3 shapes, the
//! mapping from hub error codes to A2A codes, and version selection.
//!
//! Version rules (PROTOCOLS.md §2.1): the version comes from the `A2A-Version` header (or the
//! `A2A-Version` query parameter); absent means 0.3. A value this server does not speak is
//! `-32009`. A 1.0 method name (`SendMessage`) needs version 1.0 (a headerless one is
//! `-32009`, as the official SDK answers); a 0.3 name (`message/send`) is served with 0.3
//! shapes whatever the header says. Errors in 1.0 carry `data: [google.rpc.ErrorInfo]`;
//! 0.3 errors carry the hub's code in `data.errorCode` when there is one.

use serde_json::{Value, json};

use crate::error::{ErrorCode, HubError};
use crate::protocol::{ERROR_DOMAIN, ERROR_INFO_TYPE, Method, Version, code};

/// An error to send as a JSON-RPC error object.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    /// The hub's error code, when the error came from the hub.
    pub hub: Option<ErrorCode>,
}

impl RpcError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hub: None,
        }
    }

    /// The A2A rendering of a hub error.
    pub fn from_hub(e: &HubError) -> Self {
        let c = match e.code {
            ErrorCode::RequestNotFound | ErrorCode::PushConfigNotFound => code::TASK_NOT_FOUND,
            ErrorCode::NotCancelable => code::TASK_NOT_CANCELABLE,
            ErrorCode::InvalidJson => code::PARSE_ERROR,
            ErrorCode::InvalidRequest | ErrorCode::PayloadTooLarge => code::INVALID_REQUEST,
            ErrorCode::InvalidParams
            | ErrorCode::InputValidation
            | ErrorCode::CapabilityNotFound => code::INVALID_PARAMS,
            ErrorCode::Internal => code::INTERNAL_ERROR,
            other => other.rpc_code(),
        };
        Self {
            code: c,
            message: e.message.clone(),
            hub: Some(e.code),
        }
    }

    /// The `error` member in the shape of version `v`.
    pub fn to_json(&self, v: Version) -> Value {
        let mut err = json!({ "code": self.code, "message": self.message });
        match v {
            Version::V10 => {
                let (reason, domain) = match (code::reason(self.code), self.hub) {
                    (Some(r), _) => (r.to_string(), ERROR_DOMAIN),
                    (None, Some(h)) => (h.name().to_ascii_uppercase(), "a2a-mcp"),
                    (None, None) => ("UNKNOWN".to_string(), "a2a-mcp"),
                };
                let mut metadata = serde_json::Map::new();
                if let Some(h) = self.hub {
                    metadata.insert("errorCode".into(), json!(h.name()));
                }
                err["data"] = json!([{
                    "@type": ERROR_INFO_TYPE,
                    "reason": reason,
                    "domain": domain,
                    "metadata": metadata,
                }]);
            }
            Version::V03 => {
                if let Some(h) = self.hub {
                    err["data"] = json!({ "errorCode": h.name() });
                }
            }
        }
        err
    }
}

impl From<HubError> for RpcError {
    fn from(e: HubError) -> Self {
        RpcError::from_hub(&e)
    }
}

/// A parsed request.
#[derive(Debug)]
pub struct Envelope {
    pub id: Value,
    pub method: String,
    pub params: Value,
}

/// Parses one JSON-RPC request. On failure returns the id to answer with (null when the
/// body could not be read) and the error.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, (Value, RpcError)> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        (
            Value::Null,
            RpcError::new(
                code::PARSE_ERROR,
                format!("parse error: the body is not valid JSON ({e})"),
            ),
        )
    })?;
    let Value::Object(mut m) = v else {
        return Err((
            Value::Null,
            RpcError::new(
                code::INVALID_REQUEST,
                "invalid request: send one JSON-RPC request object per POST (batches are not supported)",
            ),
        ));
    };
    let id = m.remove("id").unwrap_or(Value::Null);
    let id_ok = matches!(id, Value::String(_) | Value::Number(_));
    let answer_id = if id_ok { id.clone() } else { Value::Null };
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            answer_id,
            RpcError::new(
                code::INVALID_REQUEST,
                "invalid request: \"jsonrpc\" must be \"2.0\"",
            ),
        ));
    }
    if !id_ok {
        return Err((
            Value::Null,
            RpcError::new(
                code::INVALID_REQUEST,
                "invalid request: \"id\" must be a string or a number (A2A has no notifications)",
            ),
        ));
    }
    let method = match m.remove("method") {
        Some(Value::String(s)) => s,
        _ => {
            return Err((
                answer_id,
                RpcError::new(
                    code::INVALID_REQUEST,
                    "invalid request: \"method\" must be a string",
                ),
            ));
        }
    };
    let params = match m.remove("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return Err((
                answer_id,
                RpcError::new(code::INVALID_PARAMS, "\"params\" must be an object"),
            ));
        }
    };
    Ok(Envelope { id, method, params })
}

/// Which method a request calls and in which version's shapes it is answered, given the
/// requested protocol version (`None`: no header, i.e. 0.3). `Err` carries the version to
/// render the error in.
pub fn select(
    method: &str,
    requested: Option<&str>,
) -> Result<(Method, Version), (Version, RpcError)> {
    let header_version = match requested {
        None => Version::V03,
        Some(s) => match Version::parse(s) {
            Some(v) => v,
            None => {
                let shape = if Method::parse(method).is_some_and(|(_, v)| v == Version::V03) {
                    Version::V03
                } else {
                    Version::V10
                };
                return Err((
                    shape,
                    RpcError::new(
                        code::VERSION_NOT_SUPPORTED,
                        format!(
                            "A2A version {s:?} is not supported; this server speaks 1.0 (send A2A-Version: 1.0) and 0.3 (no header, 0.3 method names)"
                        ),
                    ),
                ));
            }
        },
    };
    match Method::parse(method) {
        Some((m, Version::V10)) if header_version != Version::V10 => Err((
            Version::V10,
            RpcError::new(
                code::VERSION_NOT_SUPPORTED,
                format!(
                    "A2A version 0.3 (no A2A-Version header) is not supported for {method}; send A2A-Version: 1.0, or use the 0.3 method name{}",
                    m.name(Version::V03)
                        .map(|n| format!(" {n:?}"))
                        .unwrap_or_default()
                ),
            ),
        )),
        Some((m, v)) => Ok((m, v)),
        None => Err((
            header_version,
            RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("method not found: {method:?}"),
            ),
        )),
    }
}

/// A success response.
pub fn response(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// An error response.
pub fn error_response(id: &Value, err: &RpcError, v: Version) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": err.to_json(v) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        let e =
            parse_envelope(br#"{"jsonrpc":"2.0","id":7,"method":"GetTask","params":{"id":"x"}}"#)
                .unwrap();
        assert_eq!((e.id, e.method.as_str()), (json!(7), "GetTask"));
        let cases: [(&[u8], i32, Value); 6] = [
            (b"{nope", code::PARSE_ERROR, Value::Null),
            (b"[]", code::INVALID_REQUEST, Value::Null),
            (
                br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
                code::INVALID_REQUEST,
                json!(1),
            ),
            (
                br#"{"jsonrpc":"2.0","method":"x"}"#,
                code::INVALID_REQUEST,
                Value::Null,
            ),
            (
                br#"{"jsonrpc":"2.0","id":"a","method":3}"#,
                code::INVALID_REQUEST,
                json!("a"),
            ),
            (
                br#"{"jsonrpc":"2.0","id":"a","method":"x","params":[1]}"#,
                code::INVALID_PARAMS,
                json!("a"),
            ),
        ];
        for (body, c, id) in cases {
            let (got_id, err) = parse_envelope(body).unwrap_err();
            assert_eq!(
                (err.code, got_id),
                (c, id),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn version_selection() {
        assert_eq!(
            select("SendMessage", Some("1.0")).unwrap(),
            (Method::SendMessage, Version::V10)
        );
        assert_eq!(
            select("message/send", None).unwrap(),
            (Method::SendMessage, Version::V03)
        );
        assert_eq!(
            select("message/send", Some("1.0")).unwrap(),
            (Method::SendMessage, Version::V03)
        );
        assert_eq!(
            select("SendMessage", None).unwrap_err().1.code,
            code::VERSION_NOT_SUPPORTED
        );
        assert_eq!(
            select("SendMessage", Some("0.3")).unwrap_err().1.code,
            code::VERSION_NOT_SUPPORTED
        );
        assert_eq!(
            select("SendMessage", Some("2.0")).unwrap_err().1.code,
            code::VERSION_NOT_SUPPORTED
        );
        assert_eq!(
            select("Nope", Some("1.0")).unwrap_err().1.code,
            code::METHOD_NOT_FOUND
        );
    }

    #[test]
    fn errors_render_per_version() {
        let e = RpcError::from_hub(&HubError::new(ErrorCode::RequestNotFound, "no request"));
        let v10 = e.to_json(Version::V10);
        assert_eq!(v10["code"], -32001);
        assert_eq!(v10["data"][0]["reason"], "TASK_NOT_FOUND");
        assert_eq!(v10["data"][0]["@type"], ERROR_INFO_TYPE);
        assert_eq!(v10["data"][0]["metadata"]["errorCode"], "request_not_found");
        let v03 = e.to_json(Version::V03);
        assert_eq!(v03["data"]["errorCode"], "request_not_found");
        let d = RpcError::from_hub(&HubError::new(ErrorCode::AgentDisabled, "off"))
            .to_json(Version::V10);
        assert_eq!(d["code"], ErrorCode::AgentDisabled.rpc_code());
        assert_eq!(d["data"][0]["reason"], "AGENT_DISABLED");
    }
}
