//! The store conformance suite: written once against the `Store` trait; every backend must
//! pass it unchanged. A backend plugs in with `conformance_suite!(name, factory)` where the
//! factory gives a fresh, empty store plus a way to reopen the same data after closing it.

use std::sync::Arc;

use a2a_mcp::model::{
    AgentRecord, AgentSource, AgentSpec, Event, EventKind, IdempotencyRecord, RequestRecord,
    RequestState, SessionRecord,
};
use a2a_mcp::store::{Aux, DynStore, ListOrder, Op, Record, RequestFilter, StoreError};
use async_trait::async_trait;

/// How the suite gets stores of one backend.
#[async_trait]
pub trait Backend: Send + Sync {
    /// A fresh, empty store.
    async fn fresh(&self) -> DynStore;
    /// Closes `store` and opens the same data again.
    async fn reopen(&self, store: DynStore) -> DynStore;
}

pub fn agent(id: &str) -> AgentRecord {
    let spec: AgentSpec = serde_json::from_value(serde_json::json!({
        "id": id,
        "name": format!("Agent {id}"),
        "capabilities": [{"name": "chat", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}],
        "executor": {"kind": "builtin", "name": "echo"}
    }))
    .unwrap();
    AgentRecord {
        spec,
        source: AgentSource::Runtime,
        removed: false,
        updated_at: 1,
    }
}

pub fn request(id: &str, state: RequestState, session: Option<&str>, agent: &str) -> RequestRecord {
    let terminal = state.is_terminal();
    RequestRecord {
        id: id.into(),
        agent_id: agent.into(),
        capability: "chat".into(),
        input: r#"{"x":1}"#.into(),
        session_id: session.map(str::to_string),
        parent_id: None,
        idempotency_key: None,
        principal: "p".into(),
        state,
        created_at: 1000,
        started_at: None,
        finished_at: terminal.then_some(2000),
        result: terminal.then(|| r#"{"ok":true}"#.into()),
        error: None,
        attempts: 0,
    }
}

pub fn event(req: &str, seq: u64, kind: EventKind) -> Event {
    Event {
        request_id: req.into(),
        seq,
        ts: 5000 + seq as i64,
        kind,
    }
}

pub async fn agents_roundtrip(b: &dyn Backend) {
    let s = b.fresh().await;
    assert!(s.get_agent("a").await.unwrap().is_none());
    s.write(vec![Op::PutAgent(agent("b")), Op::PutAgent(agent("a"))])
        .await
        .unwrap();
    let got = s.get_agent("a").await.unwrap().unwrap();
    assert_eq!(got, agent("a"));
    let mut ids: Vec<String> = s
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.spec.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["a", "b"]);
    let mut changed = agent("a");
    changed.removed = true;
    s.write(vec![
        Op::PutAgent(changed.clone()),
        Op::DeleteAgent("b".into()),
    ])
    .await
    .unwrap();
    assert_eq!(s.get_agent("a").await.unwrap().unwrap(), changed);
    assert!(s.get_agent("b").await.unwrap().is_none());
    assert_eq!(s.counts().await.unwrap().agents, 1);
}

pub async fn sessions_roundtrip(b: &dyn Backend) {
    let s = b.fresh().await;
    let mut rec = SessionRecord {
        id: "s1".into(),
        principal: "p".into(),
        agent_id: Some("a".into()),
        metadata: r#"{"k":"v"}"#.into(),
        created_at: 10,
        closed_at: None,
    };
    s.write(vec![Op::PutSession(rec.clone())]).await.unwrap();
    assert_eq!(s.get_session("s1").await.unwrap().unwrap(), rec);
    rec.closed_at = Some(20);
    s.write(vec![Op::PutSession(rec.clone())]).await.unwrap();
    assert_eq!(s.get_session("s1").await.unwrap().unwrap(), rec);
    assert!(s.get_session("nope").await.unwrap().is_none());
}

pub async fn requests_and_indexes(b: &dyn Backend) {
    let s = b.fresh().await;
    s.write(vec![
        Op::PutRequest(request("r1", RequestState::Queued, Some("s1"), "a")),
        Op::PutRequest(request("r2", RequestState::Running, Some("s1"), "b")),
        Op::PutRequest(request("r3", RequestState::Done, None, "a")),
        Op::PutRequest(request("r4", RequestState::Error, Some("s2"), "a")),
    ])
    .await
    .unwrap();
    let active: Vec<String> = s
        .active_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active, vec!["r1", "r2"]);
    assert_eq!(
        s.finished_before(2001, 10).await.unwrap(),
        vec!["r3".to_string(), "r4".to_string()]
    );
    assert!(s.finished_before(2000, 10).await.unwrap().is_empty());

    // State change moves a request between the indexes.
    let mut r1 = request("r1", RequestState::Canceled, Some("s1"), "a");
    r1.finished_at = Some(1500);
    s.write(vec![Op::PutRequest(r1.clone())]).await.unwrap();
    assert_eq!(s.get_request("r1").await.unwrap().unwrap(), r1);
    let active: Vec<String> = s
        .active_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active, vec!["r2"]);
    assert_eq!(
        s.finished_before(1600, 10).await.unwrap(),
        vec!["r1".to_string()]
    );
    // Re-finishing with another time moves the finished entry, never duplicates it.
    r1.finished_at = Some(1700);
    s.write(vec![Op::PutRequest(r1.clone())]).await.unwrap();
    assert!(s.finished_before(1600, 10).await.unwrap().is_empty());
    assert_eq!(
        s.finished_before(1800, 10).await.unwrap(),
        vec!["r1".to_string()]
    );

    // Filters and paging.
    let by_session = s
        .list_requests(&RequestFilter {
            session_id: Some("s1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_session.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["r1", "r2"]
    );
    let by_agent = s
        .list_requests(&RequestFilter {
            agent_id: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_agent.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["r1", "r3", "r4"]
    );
    let by_state = s
        .list_requests(&RequestFilter {
            states: vec![RequestState::Done, RequestState::Running],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_state.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["r2", "r3"]
    );
    let page1 = s
        .list_requests(&RequestFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page1.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["r1", "r2"]
    );
    let page2 = s
        .list_requests(&RequestFilter {
            limit: 2,
            after_id: Some("r2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["r3", "r4"]
    );
    let session_page = s
        .list_requests(&RequestFilter {
            session_id: Some("s1".into()),
            after_id: Some("r1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        session_page
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec!["r2"]
    );
}

pub async fn events_in_order_and_isolated(b: &dyn Backend) {
    let s = b.fresh().await;
    // "r1" and "r10" share a prefix: their events must not mix.
    let mut ops = vec![];
    for seq in 1..=5 {
        ops.push(Op::AppendEvent(event(
            "r1",
            seq,
            EventKind::Chunk(format!("\"{seq}\"")),
        )));
    }
    ops.push(Op::AppendEvent(event("r10", 1, EventKind::Start)));
    ops.push(Op::AppendEvent(event("r", 1, EventKind::Start)));
    s.write(ops).await.unwrap();
    let all = s.events("r1", 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(all[2], event("r1", 3, EventKind::Chunk("\"3\"".into())));
    let after = s.events("r1", 3, 100).await.unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    let limited = s.events("r1", 0, 2).await.unwrap();
    assert_eq!(
        limited.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(s.events("r1", 5, 100).await.unwrap().is_empty());
    assert!(s.events("r1", u64::MAX, 100).await.unwrap().is_empty());
    assert_eq!(s.last_seq("r1").await.unwrap(), 5);
    assert_eq!(s.last_seq("r10").await.unwrap(), 1);
    assert_eq!(s.last_seq("none").await.unwrap(), 0);
    assert_eq!(s.events("r10", 0, 10).await.unwrap().len(), 1);
    // Every event kind survives the trip.
    let kinds = vec![
        EventKind::Start,
        EventKind::Chunk("{\"a\":[1,2]}".into()),
        EventKind::Final("null".into()),
        EventKind::Error("boom ✓".into()),
        EventKind::Canceled("by test".into()),
    ];
    let ops = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| Op::AppendEvent(event("k", i as u64 + 1, k.clone())))
        .collect();
    s.write(ops).await.unwrap();
    let back: Vec<EventKind> = s
        .events("k", 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(back, kinds);
}

pub async fn delete_request_removes_everything(b: &dyn Backend) {
    let s = b.fresh().await;
    s.write(vec![
        Op::PutRequest(request("r1", RequestState::Done, Some("s1"), "a")),
        Op::AppendEvent(event("r1", 1, EventKind::Start)),
        Op::AppendEvent(event("r1", 2, EventKind::Final("1".into()))),
        Op::PutRequest(request("r2", RequestState::Queued, Some("s1"), "a")),
        Op::AppendEvent(event("r2", 1, EventKind::Start)),
    ])
    .await
    .unwrap();
    s.write(vec![
        Op::DeleteRequest("r1".into()),
        Op::DeleteRequest("r2".into()),
    ])
    .await
    .unwrap();
    assert!(s.get_request("r1").await.unwrap().is_none());
    assert!(s.events("r1", 0, 10).await.unwrap().is_empty());
    assert!(s.events("r2", 0, 10).await.unwrap().is_empty());
    assert!(s.active_requests().await.unwrap().is_empty());
    assert!(s.finished_before(i64::MAX, 10).await.unwrap().is_empty());
    assert!(
        s.list_requests(&RequestFilter {
            session_id: Some("s1".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
    let c = s.counts().await.unwrap();
    assert_eq!((c.requests, c.events), (0, 0));
    // Deleting what does not exist is not an error.
    s.write(vec![Op::DeleteRequest("ghost".into())])
        .await
        .unwrap();
}

pub async fn idempotency_records(b: &dyn Backend) {
    let s = b.fresh().await;
    let rec = |scope: &str, exp: i64| IdempotencyRecord {
        scope: scope.into(),
        request_id: format!("req-{scope}"),
        args_hash: "h".into(),
        expires_at: exp,
    };
    s.write(vec![
        Op::PutIdempotency(rec("a", 100)),
        Op::PutIdempotency(rec("b", 200)),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.get_idempotency("a").await.unwrap().unwrap(),
        rec("a", 100)
    );
    assert_eq!(
        s.expired_idempotency(150, 10).await.unwrap(),
        vec!["a".to_string()]
    );
    // Extending the expiry moves it in the expiry index.
    s.write(vec![Op::PutIdempotency(rec("a", 300))])
        .await
        .unwrap();
    assert!(s.expired_idempotency(150, 10).await.unwrap().is_empty());
    assert_eq!(
        s.expired_idempotency(301, 10).await.unwrap(),
        vec!["b".to_string(), "a".to_string()]
    );
    s.write(vec![Op::DeleteIdempotency("a".into())])
        .await
        .unwrap();
    assert!(s.get_idempotency("a").await.unwrap().is_none());
    assert_eq!(
        s.expired_idempotency(i64::MAX, 10).await.unwrap(),
        vec!["b".to_string()]
    );
    assert_eq!(s.counts().await.unwrap().idempotency_keys, 1);
}

/// A claim inserts a key unless a live record holds it; a conflict fails the whole batch
/// (the request written with it is not stored) and leaves other writers' batches alone.
pub async fn idempotency_claims_are_exclusive(b: &dyn Backend) {
    let s = b.fresh().await;
    let claim = |req: &str, exp: i64, now: i64| Op::ClaimIdempotency {
        record: IdempotencyRecord {
            scope: "k".into(),
            request_id: req.into(),
            args_hash: "h".into(),
            expires_at: exp,
        },
        now,
    };
    let req = |id: &str| Op::PutRequest(request(id, RequestState::Queued, None, "a"));
    s.write(vec![req("first"), claim("first", 1000, 10)])
        .await
        .unwrap();
    let lost = s
        .write(vec![req("second"), claim("second", 2000, 500)])
        .await;
    assert!(
        matches!(lost, Err(StoreError::Conflict(_))),
        "a live key must not be claimed twice: {lost:?}"
    );
    assert!(s.get_request("second").await.unwrap().is_none());
    assert_eq!(
        s.get_idempotency("k").await.unwrap().unwrap().request_id,
        "first"
    );
    // Expired (expires_at <= now): the next claim replaces it, in the expiry index too.
    s.write(vec![req("third"), claim("third", 3000, 1000)])
        .await
        .unwrap();
    assert_eq!(
        s.get_idempotency("k").await.unwrap().unwrap().request_id,
        "third"
    );
    assert!(s.expired_idempotency(2999, 10).await.unwrap().is_empty());

    // Racing writers on one fresh key, merged into group commits or not: exactly one wins,
    // every loser's request is absent, and unrelated writes in between all land.
    let mut tasks = Vec::new();
    for w in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("race{w:02}");
            let op = Op::ClaimIdempotency {
                record: IdempotencyRecord {
                    scope: "race".into(),
                    request_id: id.clone(),
                    args_hash: "h".into(),
                    expires_at: i64::MAX,
                },
                now: 0,
            };
            let plain = Op::PutRequest(request(
                &format!("plain{w:02}"),
                RequestState::Queued,
                None,
                "a",
            ));
            let (claimed, other) = tokio::join!(
                s.write(vec![
                    Op::PutRequest(request(&id, RequestState::Queued, None, "a")),
                    op
                ]),
                s.write(vec![plain]),
            );
            other.unwrap();
            match claimed {
                Ok(()) => Some(id),
                Err(StoreError::Conflict(_)) => None,
                Err(e) => panic!("a racing claim failed with {e}"),
            }
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins: {winners:?}");
    let stored = s.get_idempotency("race").await.unwrap().unwrap();
    assert_eq!(stored.request_id, winners[0]);
    for w in 0..16 {
        let id = format!("race{w:02}");
        assert_eq!(
            s.get_request(&id).await.unwrap().is_some(),
            id == winners[0]
        );
        assert!(
            s.get_request(&format!("plain{w:02}"))
                .await
                .unwrap()
                .is_some()
        );
    }
}

pub async fn concurrent_writers_all_land(b: &dyn Backend) {
    let s = b.fresh().await;
    let mut tasks = Vec::new();
    for w in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let id = format!("w{w:02}");
                s.write(vec![Op::AppendEvent(event(&id, i + 1, EventKind::Start))])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.counts().await.unwrap().events, 32 * 20);
    for w in 0..32 {
        assert_eq!(s.last_seq(&format!("w{w:02}")).await.unwrap(), 20);
    }
}

pub async fn data_survives_reopen(b: &dyn Backend) {
    let s = b.fresh().await;
    s.write(vec![
        Op::PutAgent(agent("a")),
        Op::PutRequest(request("r1", RequestState::Running, None, "a")),
        Op::AppendEvent(event("r1", 1, EventKind::Start)),
    ])
    .await
    .unwrap();
    let s = b.reopen(s).await;
    assert_eq!(s.get_agent("a").await.unwrap().unwrap(), agent("a"));
    assert_eq!(s.active_requests().await.unwrap().len(), 1);
    assert_eq!(s.last_seq("r1").await.unwrap(), 1);
    s.ping().await.unwrap();
}

pub async fn aux_tables_scan_in_key_order(b: &dyn Backend) {
    let s = b.fresh().await;
    let put = |t: Aux, k: &str, v: &str| Op::PutAux {
        table: t,
        key: k.into(),
        value: v.as_bytes().to_vec(),
    };
    s.write(vec![
        put(Aux::Audit, "0003", "c"),
        put(Aux::Audit, "0001", "a"),
        put(Aux::Audit, "0002", "b"),
        put(Aux::Grants, "0001", "other table"),
        put(Aux::PushConfigs, "task1/c1", "x"),
        put(Aux::PushConfigs, "task1/c2", "y"),
        put(Aux::PushConfigs, "task10/c1", "z"),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.get_aux(Aux::Audit, "0002").await.unwrap(),
        Some(b"b".to_vec())
    );
    assert_eq!(s.get_aux(Aux::Audit, "0009").await.unwrap(), None);
    let keys = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(s.scan_aux(Aux::Audit, "", None, 10).await.unwrap()),
        vec!["0001", "0002", "0003"]
    );
    assert_eq!(
        keys(s.scan_aux(Aux::Audit, "", Some("0001"), 10).await.unwrap()),
        vec!["0002", "0003"]
    );
    assert_eq!(
        keys(s.scan_aux(Aux::Audit, "", None, 2).await.unwrap()),
        vec!["0001", "0002"]
    );
    assert_eq!(
        keys(
            s.scan_aux(Aux::PushConfigs, "task1/", None, 10)
                .await
                .unwrap()
        ),
        vec!["task1/c1", "task1/c2"]
    );
    s.write(vec![Op::DeleteAux {
        table: Aux::Audit,
        key: "0002".into(),
    }])
    .await
    .unwrap();
    assert_eq!(
        keys(s.scan_aux(Aux::Audit, "", None, 10).await.unwrap()),
        vec!["0001", "0003"]
    );
    let c = s.counts().await.unwrap();
    assert_eq!(c.aux.get("audit"), Some(&2));
    assert_eq!(c.aux.get("push_configs"), Some(&3));
}

pub async fn export_yields_every_record(b: &dyn Backend) {
    let s = b.fresh().await;
    let written = vec![
        Record::Agent(agent("a")),
        Record::Session(SessionRecord {
            id: "s1".into(),
            principal: "p".into(),
            agent_id: None,
            metadata: "{}".into(),
            created_at: 1,
            closed_at: None,
        }),
        Record::Request(request("r1", RequestState::Done, Some("s1"), "a")),
        Record::Event(event("r1", 1, EventKind::Start)),
        Record::Event(event("r1", 2, EventKind::Final("1".into()))),
        Record::Idempotency(IdempotencyRecord {
            scope: "sc".into(),
            request_id: "r1".into(),
            args_hash: "h".into(),
            expires_at: 99,
        }),
        Record::Aux {
            table: Aux::ApiKeys,
            key: "k1".into(),
            value: vec![1, 2, 3],
        },
    ];
    s.write(written.iter().cloned().map(Record::into_op).collect())
        .await
        .unwrap();
    let mut got = Vec::new();
    s.export(&mut |r| {
        got.push(r);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(got, written);
    // A fresh store loaded from the export (the restore path) holds the same records.
    let t = b.fresh().await;
    t.load(got.clone()).await.unwrap();
    let mut again = Vec::new();
    t.export(&mut |r| {
        again.push(r);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(again, got);
    // An error from the consumer stops the export and is returned.
    let r = s
        .export(&mut |_| Err(StoreError::Other("stop".into())))
        .await;
    assert!(matches!(r, Err(StoreError::Other(m)) if m == "stop"));
}

/// `load` (restores) fills every table and keeps the indexes: active requests, requests by
/// session, idempotency expiry, aux scans; records of one kind may come in several runs.
pub async fn load_keeps_indexes(b: &dyn Backend) {
    let s = b.fresh().await;
    let mut records = vec![Record::Agent(agent("a")), Record::Agent(agent("b"))];
    for i in 0..50 {
        let state = if i % 5 == 0 {
            RequestState::Queued
        } else {
            RequestState::Done
        };
        let mut r = request(&format!("r{i:02}"), state, Some("s1"), "a");
        r.input = format!(r#"{{"x":{i},"text":"caf\u00e9 \"quoted\""}}"#);
        records.push(Record::Request(r));
    }
    for i in 0..50 {
        records.push(Record::Event(event(
            &format!("r{i:02}"),
            1,
            EventKind::Start,
        )));
        records.push(Record::Event(event(
            &format!("r{i:02}"),
            2,
            EventKind::Chunk(r#"{"t":"ünïcode"}"#.into()),
        )));
    }
    records.push(Record::Idempotency(IdempotencyRecord {
        scope: "sc".into(),
        request_id: "r01".into(),
        args_hash: "h".into(),
        expires_at: 99,
    }));
    for k in ["k2", "k1"] {
        records.push(Record::Aux {
            table: Aux::Audit,
            key: k.into(),
            value: vec![0, 255, 7],
        });
    }
    let (first, second) = records.split_at(60);
    s.load(first.to_vec()).await.unwrap();
    s.load(second.to_vec()).await.unwrap();
    let c = s.counts().await.unwrap();
    assert_eq!((c.agents, c.requests, c.events), (2, 50, 100));
    assert_eq!(s.active_requests().await.unwrap().len(), 10);
    let in_session = s
        .list_requests(&RequestFilter {
            session_id: Some("s1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(in_session.len(), 50);
    let r7 = s.get_request("r07").await.unwrap().unwrap();
    assert_eq!(Record::Request(r7), records[9]);
    assert_eq!(s.last_seq("r49").await.unwrap(), 2);
    assert_eq!(
        s.expired_idempotency(100, 10).await.unwrap(),
        vec!["sc".to_string()]
    );
    let aux = s.scan_aux(Aux::Audit, "", None, 10).await.unwrap();
    assert_eq!(
        aux,
        vec![
            ("k1".to_string(), vec![0, 255, 7]),
            ("k2".to_string(), vec![0, 255, 7])
        ]
    );
    // The loaded store takes ordinary writes.
    s.write(vec![Op::PutRequest(request(
        "r00",
        RequestState::Done,
        Some("s1"),
        "a",
    ))])
    .await
    .unwrap();
    assert_eq!(s.active_requests().await.unwrap().len(), 9);
}

fn ids(list: &[RequestRecord]) -> Vec<&str> {
    list.iter().map(|r| r.id.as_str()).collect()
}

/// `list_requests_of`: one caller's few requests among many of others, in either order,
/// paged with the cursor, with the session / agent / state filters; the index follows
/// deletes and survives a reopen.
pub async fn requests_listed_per_principal(b: &dyn Backend) {
    let s = b.fresh().await;
    let mut ops = Vec::new();
    let mut mine = Vec::new();
    for i in 0..300 {
        let state = if i % 2 == 0 {
            RequestState::Done
        } else {
            RequestState::Running
        };
        let agent = if i % 3 == 0 { "a" } else { "b" };
        let mut r = request(&format!("r{i:03}"), state, Some("s1"), agent);
        // Every 50th request is alice's; the others belong to many other callers.
        r.principal = if i % 50 == 7 {
            mine.push(r.id.clone());
            "key:alice".into()
        } else {
            format!("key:other{}", i % 13)
        };
        ops.push(Op::PutRequest(r));
    }
    // A principal whose name is a prefix of alice's must not leak into her listing.
    let mut near = request("r999", RequestState::Done, None, "a");
    near.principal = "key:alic".into();
    ops.push(Op::PutRequest(near));
    s.write(ops).await.unwrap();
    assert_eq!(mine, ["r007", "r057", "r107", "r157", "r207", "r257"]);

    let list = |filter: RequestFilter, order: ListOrder| {
        let s = s.clone();
        async move {
            s.list_requests_of("key:alice", &filter, order)
                .await
                .unwrap()
        }
    };
    let all = list(RequestFilter::default(), ListOrder::OldestFirst).await;
    assert_eq!(ids(&all), mine);
    assert!(all.iter().all(|r| r.principal == "key:alice"));
    let newest = list(RequestFilter::default(), ListOrder::NewestFirst).await;
    let mut reversed = mine.clone();
    reversed.reverse();
    assert_eq!(ids(&newest), reversed);

    // Paging with the cursor, both ways.
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = list(
            RequestFilter {
                after_id: cursor.clone(),
                limit: 4,
                ..Default::default()
            },
            ListOrder::NewestFirst,
        )
        .await;
        cursor = page.last().map(|r| r.id.clone());
        pages.push(ids(&page).iter().map(|i| i.to_string()).collect::<Vec<_>>());
        if page.len() < 4 {
            break;
        }
    }
    assert_eq!(
        pages,
        vec![vec!["r257", "r207", "r157", "r107"], vec!["r057", "r007"]]
    );
    let page = list(
        RequestFilter {
            after_id: Some("r107".into()),
            limit: 2,
            ..Default::default()
        },
        ListOrder::OldestFirst,
    )
    .await;
    assert_eq!(ids(&page), ["r157", "r207"]);
    // A cursor that is not one of hers still pages correctly.
    let page = list(
        RequestFilter {
            after_id: Some("r100".into()),
            ..Default::default()
        },
        ListOrder::NewestFirst,
    )
    .await;
    assert_eq!(ids(&page), ["r057", "r007"]);

    // Filters as in list_requests.
    let running = list(
        RequestFilter {
            states: vec![RequestState::Running],
            ..Default::default()
        },
        ListOrder::OldestFirst,
    )
    .await;
    assert_eq!(ids(&running), mine);
    let done = list(
        RequestFilter {
            states: vec![RequestState::Done],
            ..Default::default()
        },
        ListOrder::OldestFirst,
    )
    .await;
    assert!(done.is_empty());
    let agent_a = list(
        RequestFilter {
            agent_id: Some("a".into()),
            ..Default::default()
        },
        ListOrder::NewestFirst,
    )
    .await;
    assert_eq!(ids(&agent_a), ["r207", "r057"]);
    let other_session = list(
        RequestFilter {
            session_id: Some("s2".into()),
            ..Default::default()
        },
        ListOrder::OldestFirst,
    )
    .await;
    assert!(other_session.is_empty());
    assert!(
        s.list_requests_of(
            "key:nobody",
            &RequestFilter::default(),
            ListOrder::OldestFirst
        )
        .await
        .unwrap()
        .is_empty()
    );

    // Deleted requests leave the index; a reopened store still has it.
    s.write(vec![Op::DeleteRequest("r107".into())])
        .await
        .unwrap();
    let s = b.reopen(s).await;
    let after = s
        .list_requests_of(
            "key:alice",
            &RequestFilter::default(),
            ListOrder::OldestFirst,
        )
        .await
        .unwrap();
    assert_eq!(ids(&after), ["r007", "r057", "r157", "r207", "r257"]);
}

fn session(id: &str, created_at: i64, closed_at: Option<i64>) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        principal: "p".into(),
        agent_id: None,
        metadata: "{}".into(),
        created_at,
        closed_at,
    }
}

/// `sessions_before` (by last change: close, else creation) with its cursor, and
/// `DeleteSession`; closing a session moves it in that order.
pub async fn sessions_by_last_change(b: &dyn Backend) {
    let s = b.fresh().await;
    s.write(vec![
        Op::PutSession(session("s-open-old", 100, None)),
        Op::PutSession(session("s-closed-old", 50, Some(150))),
        Op::PutSession(session("s-open-new", 900, None)),
        Op::PutSession(session("s-closed-new", 120, Some(800))),
        Op::PutSession(session("s-tie", 100, None)),
    ])
    .await
    .unwrap();
    let names = |v: Vec<SessionRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        names(s.sessions_before(500, None, 10).await.unwrap()),
        ["s-open-old", "s-tie", "s-closed-old"]
    );
    assert_eq!(
        names(s.sessions_before(500, None, 2).await.unwrap()),
        ["s-open-old", "s-tie"]
    );
    assert_eq!(
        names(
            s.sessions_before(500, Some((100, "s-open-old")), 10)
                .await
                .unwrap()
        ),
        ["s-tie", "s-closed-old"]
    );
    assert_eq!(
        names(
            s.sessions_before(500, Some((100, "s-tie")), 10)
                .await
                .unwrap()
        ),
        ["s-closed-old"]
    );
    assert!(s.sessions_before(100, None, 10).await.unwrap().is_empty());
    // Closing late moves a session past the cutoff; its old position is gone.
    s.write(vec![Op::PutSession(session("s-open-old", 100, Some(700)))])
        .await
        .unwrap();
    assert_eq!(
        names(s.sessions_before(500, None, 10).await.unwrap()),
        ["s-tie", "s-closed-old"]
    );
    s.write(vec![
        Op::DeleteSession("s-tie".into()),
        Op::DeleteSession("ghost".into()),
    ])
    .await
    .unwrap();
    assert!(s.get_session("s-tie").await.unwrap().is_none());
    let s = b.reopen(s).await;
    assert_eq!(
        names(s.sessions_before(1000, None, 10).await.unwrap()),
        ["s-closed-old", "s-open-old", "s-closed-new", "s-open-new"]
    );
    assert_eq!(s.counts().await.unwrap().sessions, 4);
}

pub async fn closed_store_refuses_writes(b: &dyn Backend) {
    let s = b.fresh().await;
    s.close().await.unwrap();
    let r = s.write(vec![Op::PutAgent(agent("a"))]).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}

/// Generates one test per conformance check for a backend.
#[macro_export]
macro_rules! conformance_suite {
    ($modname:ident, $backend:expr) => {
        mod $modname {
            use super::*;
            use $crate::it::store_conformance as c;
            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let b = $backend;
                        c::$name(&b).await;
                    }
                };
            }
            check!(agents_roundtrip);
            check!(sessions_roundtrip);
            check!(requests_and_indexes);
            check!(events_in_order_and_isolated);
            check!(delete_request_removes_everything);
            check!(idempotency_records);
            check!(idempotency_claims_are_exclusive);
            check!(load_keeps_indexes);
            check!(concurrent_writers_all_land);
            check!(data_survives_reopen);
            check!(closed_store_refuses_writes);
            check!(aux_tables_scan_in_key_order);
            check!(export_yields_every_record);
            check!(requests_listed_per_principal);
            check!(sessions_by_last_change);
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Backends

pub struct Redb {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicU32,
    current: parking_lot::Mutex<std::path::PathBuf>,
}

impl Redb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let current = parking_lot::Mutex::new(dir.path().join("s0.redb"));
        Self {
            dir,
            next: std::sync::atomic::AtomicU32::new(0),
            current,
        }
    }
}

#[async_trait]
impl Backend for Redb {
    async fn fresh(&self) -> DynStore {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.path().join(format!("s{n}.redb"));
        *self.current.lock() = path.clone();
        Arc::new(a2a_mcp::store::redb::RedbStore::open(&path).unwrap())
    }
    async fn reopen(&self, store: DynStore) -> DynStore {
        store.close().await.unwrap();
        drop(store);
        let path = self.current.lock().clone();
        Arc::new(a2a_mcp::store::redb::RedbStore::open(&path).unwrap())
    }
}

conformance_suite!(redb, Redb::new());

#[tokio::test]
async fn redb_file_is_locked_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let _first = a2a_mcp::store::redb::RedbStore::open(&path).unwrap();
    match a2a_mcp::store::redb::RedbStore::open(&path) {
        Err(StoreError::Locked(msg)) => {
            assert!(msg.contains("in use by another"), "{msg}");
            assert!(
                msg.contains("--remote"),
                "the message says what to do instead: {msg}"
            );
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second open of the same file must fail"),
    }
}

/// A file of layout version 1 (no per-principal or sessions-by-time index) gets both built
/// when it is opened, and records version 2.
#[tokio::test]
async fn redb_layout_1_gains_its_indexes_when_opened() {
    use ::redb::ReadableDatabase;
    use a2a_mcp::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let s = a2a_mcp::store::redb::RedbStore::open(&path).unwrap();
        let mut r = request("r1", RequestState::Done, Some("s1"), "a");
        r.principal = "key:alice".into();
        s.write(vec![
            Op::PutRequest(r),
            Op::PutRequest(request("r2", RequestState::Done, None, "a")),
            Op::PutSession(session("s1", 10, Some(20))),
        ])
        .await
        .unwrap();
        s.close().await.unwrap();
    }
    // Make it look like version 1 wrote it.
    {
        let db = ::redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(
            txn.delete_table(::redb::TableDefinition::<(&str, &str), ()>::new(
                "requests_by_principal"
            ))
            .unwrap()
        );
        assert!(
            txn.delete_table(::redb::TableDefinition::<(i64, &str), ()>::new(
                "sessions_by_time"
            ))
            .unwrap()
        );
        {
            let mut meta = txn
                .open_table(::redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("schema_version", 1u64).unwrap();
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        assert!(
            read.open_table(::redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap()
                .get("schema_version")
                .unwrap()
                .is_some_and(|v| v.value() == 1)
        );
    }
    let s = a2a_mcp::store::redb::RedbStore::open(&path).unwrap();
    assert_eq!(s.found_version(), 1);
    let mine = s
        .list_requests_of(
            "key:alice",
            &RequestFilter::default(),
            ListOrder::NewestFirst,
        )
        .await
        .unwrap();
    assert_eq!(ids(&mine), ["r1"]);
    let old = s.sessions_before(100, None, 10).await.unwrap();
    assert_eq!(old.len(), 1);
    s.close().await.unwrap();
    drop(s);
    let s = a2a_mcp::store::redb::RedbStore::open(&path).unwrap();
    assert_eq!(s.found_version(), a2a_mcp::store::redb::SCHEMA_VERSION);
    s.close().await.unwrap();
}
