//! Rows to records: the column lists of each table and the conversions back into model
//! records (a value that does not convert is reported as a corrupt record).

use tokio_postgres::Row;
use tokio_postgres::types::Json;

use super::connection::corrupt;
use crate::model::{AgentRecord, Event, IdempotencyRecord, RequestRecord, SessionRecord};
use crate::store::columns::{kind_from_columns, parse_source, parse_state};
use crate::store::{Aux, Record, StoreResult};

pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    table: &'static str,
) -> StoreResult<T> {
    row.try_get(i).map_err(|e| corrupt(table, e.to_string()))
}

pub(super) const AGENT_COLS: &str = "spec, source, removed, updated_at";

pub(super) fn agent_from(r: &Row) -> StoreResult<AgentRecord> {
    let Json(spec) = get(r, 0, "agents")?;
    let source: &str = get(r, 1, "agents")?;
    Ok(AgentRecord {
        spec,
        source: parse_source(source)
            .ok_or_else(|| corrupt("agents", format!("unknown source {source:?}")))?,
        removed: get(r, 2, "agents")?,
        updated_at: get(r, 3, "agents")?,
    })
}

pub(super) const SESSION_COLS: &str = "id, principal, agent_id, metadata, created_at, closed_at";

pub(super) fn session_from(r: &Row) -> StoreResult<SessionRecord> {
    let t = "sessions";
    Ok(SessionRecord {
        id: get(r, 0, t)?,
        principal: get(r, 1, t)?,
        agent_id: get(r, 2, t)?,
        metadata: get(r, 3, t)?,
        created_at: get(r, 4, t)?,
        closed_at: get(r, 5, t)?,
    })
}

pub(super) const REQUEST_COLS: &str = "id, agent_id, capability, input, session_id, parent_id, \
     idempotency_key, principal, state, created_at, started_at, finished_at, result, error, attempts";

pub(super) fn request_from(r: &Row) -> StoreResult<RequestRecord> {
    let t = "requests";
    let state: &str = get(r, 8, t)?;
    let attempts: i32 = get(r, 14, t)?;
    Ok(RequestRecord {
        id: get(r, 0, t)?,
        agent_id: get(r, 1, t)?,
        capability: get(r, 2, t)?,
        input: get(r, 3, t)?,
        session_id: get(r, 4, t)?,
        parent_id: get(r, 5, t)?,
        idempotency_key: get(r, 6, t)?,
        principal: get(r, 7, t)?,
        state: parse_state(state).ok_or_else(|| corrupt(t, format!("unknown state {state:?}")))?,
        created_at: get(r, 9, t)?,
        started_at: get(r, 10, t)?,
        finished_at: get(r, 11, t)?,
        result: get(r, 12, t)?,
        error: get(r, 13, t)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(t, format!("attempts {attempts}")))?,
    })
}

pub(super) const EVENT_COLS: &str = "request_id, seq, ts, kind, data";

pub(super) fn event_from(r: &Row) -> StoreResult<Event> {
    let t = "events";
    let seq: i64 = get(r, 1, t)?;
    let kind: &str = get(r, 3, t)?;
    Ok(Event {
        request_id: get(r, 0, t)?,
        seq: u64::try_from(seq).map_err(|_| corrupt(t, format!("seq {seq}")))?,
        ts: get(r, 2, t)?,
        kind: kind_from_columns(kind, get(r, 4, t)?)?,
    })
}

pub(super) const IDEM_COLS: &str = "scope, request_id, args_hash, expires_at";

pub(super) fn idem_from(r: &Row) -> StoreResult<IdempotencyRecord> {
    let t = "idempotency";
    Ok(IdempotencyRecord {
        scope: get(r, 0, t)?,
        request_id: get(r, 1, t)?,
        args_hash: get(r, 2, t)?,
        expires_at: get(r, 3, t)?,
    })
}

pub(super) fn aux_from(r: &Row) -> StoreResult<Record> {
    let name: &str = get(r, 0, "aux")?;
    let Some(table) = Aux::from_name(name) else {
        return Err(corrupt("aux", format!("unknown auxiliary table {name:?}")));
    };
    Ok(Record::Aux {
        table,
        key: get(r, 1, "aux")?,
        value: get(r, 2, "aux")?,
    })
}
