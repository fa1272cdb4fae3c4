//! Administration tools: API keys, the audit log and backups.

use crate::api::views::{AuditEntryView, KeyView, to_json};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Call;
use super::agents::NoArgs;
use crate::api::duration_param;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{Role, now_ms};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyArgs {
    /// admin, operator, invoker or viewer.
    pub role: String,
    #[serde(default)]
    pub label: String,
    /// e.g. `30d` (default: no expiry).
    #[serde(default, alias = "expires_in")]
    pub expires_in: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyIdArgs {
    /// The key's public id (from list_api_keys).
    pub id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditArgs {
    /// Entries after this entry id (for paging).
    #[serde(default)]
    pub after: Option<String>,
    /// At most this many entries (1-1000, default 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListBackupsArgs {
    /// Check each snapshot's checksum and records (slower).
    #[serde(default)]
    pub verify: bool,
}

pub async fn create_key(c: &Call<'_>, a: CreateKeyArgs) -> HubResult<Value> {
    let role = a
        .role
        .parse::<Role>()
        .map_err(|e| HubError::new(ErrorCode::InvalidParams, e))?;
    let exp = duration_param("expiresIn", &a.expires_in)?;
    let (token, rec) = c.hub().create_key(&c.p, role, &a.label, exp).await?;
    let mut v = to_json(&KeyView::at(&rec, now_ms()));
    if let Value::Object(m) = &mut v {
        m.insert("key".into(), Value::String(token));
    }
    Ok(v)
}

pub async fn list_keys(c: &Call<'_>, _: NoArgs) -> HubResult<Value> {
    let keys = c.hub().list_keys(&c.p).await?;
    let now = now_ms();
    Ok(json!({ "keys": keys.iter().map(|k| to_json(&KeyView::at(k, now))).collect::<Vec<_>>() }))
}

pub async fn revoke_key(c: &Call<'_>, a: KeyIdArgs) -> HubResult<Value> {
    let k = c.hub().revoke_key(&c.p, &a.id).await?;
    Ok(to_json(&KeyView::at(&k, now_ms())))
}

pub async fn audit_log(c: &Call<'_>, a: AuditArgs) -> HubResult<Value> {
    let entries = c
        .hub()
        .list_audit(&c.p, a.after.as_deref(), a.limit.unwrap_or(100))
        .await?;
    Ok(
        json!({ "entries": entries.iter().map(|e| to_json(&AuditEntryView::from(e))).collect::<Vec<_>>() }),
    )
}

pub async fn create_backup(c: &Call<'_>, _: NoArgs) -> HubResult<Value> {
    let s = c.hub().create_backup(&c.p).await?;
    Ok(crate::api::views::to_json(
        &crate::api::views::BackupView::from(&s),
    ))
}

pub async fn list_backups(c: &Call<'_>, a: ListBackupsArgs) -> HubResult<Value> {
    let b = c.hub().list_backups(&c.p, a.verify).await?;
    let views: Vec<_> = b.iter().map(crate::api::views::BackupView::from).collect();
    Ok(json!({ "backups": views }))
}
