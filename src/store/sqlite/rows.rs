//! Rows to records: the column lists of each table, their conversions back into model
//! records, the small query helpers every read uses, and the request listing query.

use rusqlite::{Connection, OptionalExtension, Row};

use super::{corrupt, io, limit_i64};
use crate::model::{AgentRecord, Event, IdempotencyRecord, RequestRecord, SessionRecord};
use crate::store::columns::{kind_from_columns, parse_source, parse_state};
use crate::store::{ListOrder, RequestFilter, StoreResult};

type RowResult<T> = rusqlite::Result<StoreResult<T>>;

pub(super) const AGENT_COLS: &str = "spec, source, removed, updated_at";

pub(super) fn agent_row(r: &Row<'_>) -> RowResult<AgentRecord> {
    let spec: String = r.get(0)?;
    let source: String = r.get(1)?;
    let removed: i64 = r.get(2)?;
    let updated_at: i64 = r.get(3)?;
    Ok((|| {
        let spec = serde_json::from_str(&spec).map_err(|e| corrupt("agents", e.to_string()))?;
        let source = parse_source(&source)
            .ok_or_else(|| corrupt("agents", format!("unknown source {source:?}")))?;
        Ok(AgentRecord {
            spec,
            source,
            removed: removed != 0,
            updated_at,
        })
    })())
}

pub(super) const SESSION_COLS: &str = "id, principal, agent_id, metadata, created_at, closed_at";

pub(super) fn session_row(r: &Row<'_>) -> RowResult<SessionRecord> {
    Ok(Ok(SessionRecord {
        id: r.get(0)?,
        principal: r.get(1)?,
        agent_id: r.get(2)?,
        metadata: r.get(3)?,
        created_at: r.get(4)?,
        closed_at: r.get(5)?,
    }))
}

pub(super) const REQUEST_COLS: &str = "id, agent_id, capability, input, session_id, parent_id, \
     idempotency_key, principal, state, created_at, started_at, finished_at, result, error, attempts";

pub(super) fn request_row(r: &Row<'_>) -> RowResult<RequestRecord> {
    let state: String = r.get(8)?;
    let attempts: i64 = r.get(14)?;
    let Some(state) = parse_state(&state) else {
        return Ok(Err(corrupt("requests", format!("unknown state {state:?}"))));
    };
    let Ok(attempts) = u32::try_from(attempts) else {
        return Ok(Err(corrupt("requests", format!("attempts {attempts}"))));
    };
    Ok(Ok(RequestRecord {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        capability: r.get(2)?,
        input: r.get(3)?,
        session_id: r.get(4)?,
        parent_id: r.get(5)?,
        idempotency_key: r.get(6)?,
        principal: r.get(7)?,
        state,
        created_at: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
        result: r.get(12)?,
        error: r.get(13)?,
        attempts,
    }))
}

pub(super) const EVENT_COLS: &str = "request_id, seq, ts, kind, data";

pub(super) fn event_row(r: &Row<'_>) -> RowResult<Event> {
    let seq: i64 = r.get(1)?;
    let kind: String = r.get(3)?;
    let data: Option<String> = r.get(4)?;
    let request_id: String = r.get(0)?;
    let ts: i64 = r.get(2)?;
    Ok((|| {
        Ok(Event {
            request_id,
            seq: u64::try_from(seq).map_err(|_| corrupt("events", format!("seq {seq}")))?,
            ts,
            kind: kind_from_columns(&kind, data)?,
        })
    })())
}

pub(super) const IDEM_COLS: &str = "scope, request_id, args_hash, expires_at";

pub(super) fn idem_row(r: &Row<'_>) -> RowResult<IdempotencyRecord> {
    Ok(Ok(IdempotencyRecord {
        scope: r.get(0)?,
        request_id: r.get(1)?,
        args_hash: r.get(2)?,
        expires_at: r.get(3)?,
    }))
}

pub(super) fn aux_row(r: &Row<'_>) -> RowResult<(String, String, Vec<u8>)> {
    Ok(Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

pub(super) fn query<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: fn(&Row<'_>) -> RowResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(io)?;
    let rows = stmt.query_map(params, f).map_err(io)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(io)??);
    }
    Ok(out)
}

pub(super) fn query_one<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: fn(&Row<'_>) -> RowResult<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(io)?;
    match stmt.query_row(params, f).optional().map_err(io)? {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}

/// Streams every row of `sql` to `each` (for exports: no intermediate vector).
pub(super) fn for_each<T>(
    conn: &Connection,
    sql: &str,
    f: fn(&Row<'_>) -> RowResult<T>,
    mut each: impl FnMut(T) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut stmt = conn.prepare(sql).map_err(io)?;
    let rows = stmt.query_map([], f).map_err(io)?;
    for r in rows {
        each(r.map_err(io)??)?;
    }
    Ok(())
}

/// The query of a request listing (of one principal, through `requests_by_principal`, or of
/// everyone) and its parameters.
pub(super) fn request_listing(
    principal: Option<&str>,
    filter: &RequestFilter,
    order: ListOrder,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE 1 = 1");
    let mut args: Vec<V> = Vec::new();
    let cond = |sql: &mut String, args: &mut Vec<V>, clause: &str, v: V| {
        args.push(v);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(p) = principal {
        cond(&mut sql, &mut args, "principal =", V::Text(p.to_string()));
    }
    if let Some(s) = &filter.session_id {
        cond(&mut sql, &mut args, "session_id =", V::Text(s.clone()));
    }
    if let Some(a) = &filter.agent_id {
        cond(&mut sql, &mut args, "agent_id =", V::Text(a.clone()));
    }
    if !filter.states.is_empty() {
        let mut marks = Vec::new();
        for s in &filter.states {
            args.push(V::Text(s.as_str().to_string()));
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
    }
    let (cmp, dir) = match order {
        ListOrder::OldestFirst => ("id >", "ASC"),
        ListOrder::NewestFirst => ("id <", "DESC"),
    };
    if let Some(after) = &filter.after_id {
        cond(&mut sql, &mut args, cmp, V::Text(after.clone()));
    }
    let limit = if filter.limit == 0 {
        -1
    } else {
        limit_i64(filter.limit)
    };
    args.push(V::Integer(limit));
    sql.push_str(&format!(" ORDER BY id {dir} LIMIT ?{}", args.len()));
    (sql, args)
}
