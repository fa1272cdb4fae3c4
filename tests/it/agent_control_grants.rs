//! `agent_control`'s permission actions with the original server's call shapes: grant,
//! request, approve, revoke, get_permissions and get_sharing_agreements.

use serde_json::json;

use super::agent_control::{ctl, failure, ok};
use super::harness::*;

#[tokio::test]
async fn grant_request_approve_revoke_and_get_permissions() {
    let th = TestHub::start().await;
    // grant_permission: id (granter), targetAgentId, expiresIn in milliseconds.
    let g = ok(&th, json!({"action": "grant_permission", "id": "operator", "targetAgentId": "echo",
        "permission": "agent:invoke:billing", "delegable": true, "expiresIn": 3_600_000, "reason": "test"})).await;
    let gid = g["grantId"].as_str().unwrap().to_string();
    assert_eq!(
        (g["success"].as_bool(), g["grant"]["agentId"].as_str()),
        (Some(true), Some("echo")),
        "{g}"
    );
    assert!(
        g["grant"]["expiresAt"].is_string() && g["grant"]["delegable"] == true,
        "{g}"
    );
    // request_permission: id (requester), targetAgentId (who is asked), reason.
    let r = ok(
        &th,
        json!({"action": "request_permission", "id": "echo", "targetAgentId": "billing",
        "permission": "agent:invoke:reports", "reason": "needs the reports"}),
    )
    .await;
    let rid = r["requestId"].as_str().unwrap().to_string();
    assert_eq!(
        (r["success"].as_bool(), r["request"]["status"].as_str()),
        (Some(true), Some("pending")),
        "{r}"
    );
    // get_permissions {id}: the original shape, with the pending request.
    let p = ok(&th, json!({"action": "get_permissions", "id": "echo"})).await;
    assert_eq!(
        p["permissions"]["effective"],
        json!(["agent:invoke:billing"]),
        "{p}"
    );
    assert_eq!(
        p["permissions"]["granted"][0]["grantId"],
        gid.as_str(),
        "{p}"
    );
    assert_eq!(
        p["pendingRequests"][0]["permissionRequestId"],
        rid.as_str(),
        "{p}"
    );
    // approve_permission: id (approver), requestId.
    let a = ok(
        &th,
        json!({"action": "approve_permission", "id": "operator", "requestId": rid, "reason": "ok"}),
    )
    .await;
    assert_eq!(a["request"]["status"], "approved", "{a}");
    let new_grant = a["grantId"].as_str().unwrap().to_string();
    let p = ok(&th, json!({"action": "get_permissions", "id": "echo"})).await;
    assert_eq!(
        p["permissions"]["effective"],
        json!(["agent:invoke:billing", "agent:invoke:reports"]),
        "{p}"
    );
    assert_eq!(p["pendingRequests"], json!([]), "{p}");
    // revoke_permission: id (revoker), grantId.
    let v = ok(&th, json!({"action": "revoke_permission", "id": "operator", "grantId": new_grant, "reason": "done"})).await;
    assert_eq!(
        (v["success"].as_bool(), v["grant"]["active"].as_bool()),
        (Some(true), Some(false)),
        "{v}"
    );
    let p = ok(&th, json!({"action": "get_permissions", "id": "echo"})).await;
    assert_eq!(
        p["permissions"]["effective"],
        json!(["agent:invoke:billing"]),
        "{p}"
    );
    // The original's permission names are not this hub's: the answer says which are.
    let e = failure(&ctl(&th, None, json!({"action": "grant_permission", "id": "x", "targetAgentId": "echo", "permission": "file:read"})).await);
    assert!(
        e["message"].as_str().unwrap().contains("agent:invoke:"),
        "{e}"
    );
    th.stop().await;
}

#[tokio::test]
async fn get_sharing_agreements_shows_grants_both_ways() {
    let th = TestHub::start().await;
    ok(&th, json!({"action": "grant_permission", "targetAgentId": "echo", "permission": "agent:invoke:billing"})).await;
    let d = ok(
        &th,
        json!({"action": "get_sharing_agreements", "id": "billing"}),
    )
    .await;
    assert_eq!(d["providing"].as_array().unwrap().len(), 1, "{d}");
    let a = &d["providing"][0];
    assert_eq!(
        (
            a["providerAgentId"].as_str(),
            a["consumerAgentId"].as_str(),
            a["active"].as_bool()
        ),
        (Some("billing"), Some("echo"), Some(true)),
        "{d}"
    );
    assert_eq!(d["consuming"], json!([]));
    let d = ok(
        &th,
        json!({"action": "get_sharing_agreements", "id": "echo"}),
    )
    .await;
    assert_eq!(
        (
            d["providing"].clone(),
            d["consuming"][0]["providerAgentId"].clone()
        ),
        (json!([]), json!("billing")),
        "{d}"
    );
    th.stop().await;
}
