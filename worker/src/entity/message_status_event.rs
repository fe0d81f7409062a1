use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "message_status_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub dedup_key: String,
    pub message_sid: String,
    pub status: super::StoredStatus,
    pub status_rank: i16,
    pub error_code: Option<i32>,
    pub raw_payload: Json,
    pub content_type: String,
    pub idempotency_token: Option<String>,
    pub request_id: String,
    pub received_at: DateTimeUtc,
    pub persisted_at: DateTimeUtc,
    pub source: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
