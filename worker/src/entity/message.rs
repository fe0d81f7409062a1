use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_sid: String,
    pub status: super::StoredStatus,
    pub status_rank: i16,
    pub status_precedence: i16,
    pub error_code: Option<i32>,
    pub account_sid: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
    pub first_seen_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub event_count: i32,
    pub terminal_outcomes: i16,
    pub conflicting_outcomes: bool,
    pub updated_at: DateTimeUtc,
    pub final_at: Option<DateTimeUtc>,
    pub reconciled_at: Option<DateTimeUtc>,
    pub reconcile_checks: i16,
    pub twilio_not_found_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
