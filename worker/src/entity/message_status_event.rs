use sea_orm::entity::prelude::*;

/// A row of the history (partitioned by day; the partitions are
/// `store::partitions`'). `(message_sid, dedup_key)` is unique within a
/// day's partition, and across neighbouring days by the store statement.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "message_status_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_sid: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub dedup_key: Vec<u8>,
    pub received_at: DateTimeUtc,
    pub persisted_at: DateTimeUtc,
    pub request_id: Option<Uuid>,
    pub error_code: Option<i32>,
    pub status_rank: i16,
    /// The callback's body was JSON (otherwise a form).
    pub json_body: bool,
    pub status: super::StoredStatus,
    pub source: String,
    pub idempotency_token: Option<String>,
    pub raw_payload: Json,
    /// Signed with another account's secret than the message's owner's:
    /// kept, but it never changed the message's state.
    pub foreign_account: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
