//! Text encodings of enum columns shared by the SQL backends (SQLite and Postgres store agent
//! sources, request states and event kinds as the same strings).

use crate::model::{AgentSource, EventKind, RequestState};
use crate::store::{StoreError, StoreResult};

pub(crate) fn source_str(s: AgentSource) -> &'static str {
    match s {
        AgentSource::Catalog => "catalog",
        AgentSource::Runtime => "runtime",
    }
}

pub(crate) fn parse_source(s: &str) -> Option<AgentSource> {
    match s {
        "catalog" => Some(AgentSource::Catalog),
        "runtime" => Some(AgentSource::Runtime),
        _ => None,
    }
}

pub(crate) fn parse_state(s: &str) -> Option<RequestState> {
    RequestState::ALL.into_iter().find(|st| st.as_str() == s)
}

/// Column form of an event kind: (kind, data).
pub(crate) fn kind_columns(k: &EventKind) -> (&'static str, Option<&str>) {
    match k {
        EventKind::Start => ("start", None),
        EventKind::Chunk(d) => ("chunk", Some(d)),
        EventKind::Final(d) => ("final", Some(d)),
        EventKind::Error(d) => ("error", Some(d)),
        EventKind::Canceled(d) => ("canceled", Some(d)),
    }
}

pub(crate) fn kind_from_columns(kind: &str, data: Option<String>) -> StoreResult<EventKind> {
    let data = || data.clone().unwrap_or_default();
    Ok(match kind {
        "start" => EventKind::Start,
        "chunk" => EventKind::Chunk(data()),
        "final" => EventKind::Final(data()),
        "error" => EventKind::Error(data()),
        "canceled" => EventKind::Canceled(data()),
        other => {
            return Err(StoreError::Corrupt {
                table: "events",
                detail: format!("unknown event kind {other:?}"),
            });
        }
    })
}
