//! Versioned binary records.
//!
//! Every stored value starts with one format byte, then the body. Bodies are postcard
//! (compact, positional, maintained) except agent definitions, whose JSON Schemas are free-form
//! JSON and are stored as JSON text. Payloads inside records (inputs, results, chunks) are
//! already JSON text and are never parsed here.
//!
//! Changing a record's shape means a new format byte and a conversion from the old one; a
//! record with a format byte newer than this build knows is refused with a clear message.

use serde::{Serialize, de::DeserializeOwned};

use super::{StoreError, StoreResult};

/// Current format of postcard-encoded records.
pub const FORMAT_POSTCARD_V1: u8 = 1;
/// Current format of JSON-encoded records (agents).
pub const FORMAT_JSON_V1: u8 = 101;

pub fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    let mut out = vec![FORMAT_POSTCARD_V1];
    let body = postcard::to_stdvec(value).map_err(|e| StoreError::Other(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> StoreResult<T> {
    match bytes.split_first() {
        Some((&FORMAT_POSTCARD_V1, body)) => {
            postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
                table,
                detail: e.to_string(),
            })
        }
        Some((&v, _)) => Err(unknown_format(table, v)),
        None => Err(StoreError::Corrupt {
            table,
            detail: "empty record".into(),
        }),
    }
}

pub fn encode_json<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    let mut out = vec![FORMAT_JSON_V1];
    serde_json::to_writer(&mut out, value).map_err(|e| StoreError::Other(e.to_string()))?;
    Ok(out)
}

pub fn decode_json<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> StoreResult<T> {
    match bytes.split_first() {
        Some((&FORMAT_JSON_V1, body)) => {
            serde_json::from_slice(body).map_err(|e| StoreError::Corrupt {
                table,
                detail: e.to_string(),
            })
        }
        Some((&v, _)) => Err(unknown_format(table, v)),
        None => Err(StoreError::Corrupt {
            table,
            detail: "empty record".into(),
        }),
    }
}

fn unknown_format(table: &'static str, v: u8) -> StoreError {
    StoreError::TooNew(format!(
        "a record in table {table} has format {v}, which this build of a2a-mcp {} does not know; \
         it was written by a newer version: upgrade the binary or restore a backup made by this version",
        env!("CARGO_PKG_VERSION")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, EventKind};

    #[test]
    fn roundtrip_and_unknown_format() {
        let ev = Event {
            request_id: "r1".into(),
            seq: 3,
            ts: 42,
            kind: EventKind::Chunk("\"hi\"".into()),
        };
        let bytes = encode(&ev).unwrap();
        assert_eq!(bytes[0], FORMAT_POSTCARD_V1);
        let back: Event = decode("events", &bytes).unwrap();
        assert_eq!(back, ev);
        let mut newer = bytes.clone();
        newer[0] = 9;
        assert!(matches!(
            decode::<Event>("events", &newer),
            Err(StoreError::TooNew(_))
        ));
        assert!(matches!(
            decode::<Event>("events", &bytes[..3]),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
